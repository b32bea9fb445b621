"""An event's ``data`` validated for its type (:data:`mappings.domain.EVENT_DATA_MODELS`), memoised
per distinct JSON content: every later event of an order reads its earlier events' data again.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from pydantic import ValidationError

from mappings.domain import EventType, StrictModel
from mappings.events import EVENT_DATA_MODELS, EventRecord

__all__ = ["typed_data"]


def typed_data(record: EventRecord) -> StrictModel | None:
    """The record's data validated for its type; None if stored data no longer validates.

    Each event's data is read again at every later event of its order, so the (frozen) result is
    kept per distinct JSON content.  Content that is not plain JSON, or holds a ``null`` (orjson
    also writes NaN and infinities so), is validated every time.
    """
    try:
        content = orjson.dumps(record.data, option=_PLAIN_JSON)
    except TypeError:
        content = b"null"
    if b"null" in content:
        return _validated_data(EVENT_DATA_MODELS[record.type], record.data)
    return _typed_data_of(record.type, content)


_PLAIN_JSON = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
               | orjson.OPT_PASSTHROUGH_SUBCLASS)


@functools.lru_cache(maxsize=4096)
def _typed_data_of(event_type: EventType, content: bytes) -> StrictModel | None:
    return _validated_data(EVENT_DATA_MODELS[event_type], orjson.loads(content))


def _validated_data(model: type[StrictModel], data: Any) -> StrictModel | None:
    try:
        return model.model_validate(data)
    except ValidationError:
        return None
