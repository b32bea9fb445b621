"""Search and history Bundles, and the opaque paging cursor behind ``Bundle.link[next]``.

A cursor is base64url JSON holding the honoured query parameters and the keyset position
(``last_updated``, id[, version]) of the last entry served.  It carries no authority: the next page
re-applies the caller's token and scope, so a forged cursor reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.fhir_api.outcome import FhirError
from gateway.fhir_api.params import is_fhir_id
from gateway.store.fhir_read import StoredVersion
from gateway.store.search_params import from_us

__all__ = ["CURSOR_PARAM", "encode_cursor", "decode_cursor", "searchset", "history_bundle", "entry_etag",
           "http_date"]

CURSOR_PARAM = "_cursor"
Pair = tuple[str, str]


def encode_cursor(params: Sequence[Pair], key: Sequence[Any]) -> str:
    raw = orjson.dumps({"v": 1, "p": [list(p) for p in params], "k": list(key)})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sane(part: Any) -> bool:
    """A key part the database can compare: a 64-bit integer or a FHIR id (no NUL, bounded)."""
    if isinstance(part, int):
        return bool(-(2**63) <= part < 2**63)
    return isinstance(part, str) and is_fhir_id(part)


def decode_cursor(token: str, key_types: Sequence[type]) -> tuple[list[Pair], tuple[Any, ...]]:
    """The parameters and key in ``token``; 400 ``invalid`` if it is not one of ours."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        params = [(str(k), str(v)) for k, v in data["p"]]
        key = tuple(data["k"])
        if data["v"] != 1 or len(key) != len(key_types) or not all(
                isinstance(part, kind) and not isinstance(part, bool) and _sane(part)
                for part, kind in zip(key, key_types, strict=True)):
            raise ValueError("wrong key")
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise FhirError(400, "invalid", "The paging cursor is not valid; start the search again",
                        expression=CURSOR_PARAM) from None
    return params, key


def _url(base: str, path: str, params: Sequence[Pair]) -> str:
    return f"{base}/{path}" + (f"?{urlencode(list(params))}" if params else "")


def http_date(last_updated_us: int) -> str:
    return format_datetime(from_us(last_updated_us).replace(microsecond=0), usegmt=True)


def entry_etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def _resource_entry(base: str, stored: StoredVersion) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{stored.resource_type}/{stored.resource_id}",
            "resource": orjson.Fragment(stored.body)}


def searchset(base: str, resource_type: str, *, self_params: Sequence[Pair],
              matches: Sequence[StoredVersion], includes: Sequence[StoredVersion], total: int | None,
              next_params: Sequence[Pair] | None) -> dict[str, Any]:
    links = [{"relation": "self", "url": _url(base, resource_type, self_params)}]
    if next_params is not None:
        links.append({"relation": "next", "url": _url(base, resource_type, next_params)})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    entries = [{**_resource_entry(base, s), "search": {"mode": "match"}} for s in matches]
    entries += [{**_resource_entry(base, s), "search": {"mode": "include"}} for s in includes]
    if entries:
        bundle["entry"] = entries
    return bundle


def history_bundle(base: str, path: str, *, self_params: Sequence[Pair], versions: Sequence[StoredVersion],
                   next_params: Sequence[Pair] | None) -> dict[str, Any]:
    links = [{"relation": "self", "url": _url(base, path, self_params)}]
    if next_params is not None:
        links.append({"relation": "next", "url": _url(base, path, next_params)})
    entries = []
    for stored in versions:
        created = stored.version_id == 1
        path = stored.resource_type if created else f"{stored.resource_type}/{stored.resource_id}"
        entries.append({
            **_resource_entry(base, stored),
            "request": {"method": "POST" if created else "PUT",
                        "url": path},
            "response": {"status": "201 Created" if created else "200 OK",
                         "etag": entry_etag(stored.version_id), "lastModified": stored.last_updated},
        })
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle
