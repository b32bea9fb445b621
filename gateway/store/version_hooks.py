"""Hooks run when new FHIR resource versions are stored, in the writer's own transaction.

The store knows nothing above it; a package above (subscriptions) registers a hook for a database at
bootstrap (:func:`register`), and :func:`gateway.store.fhir.save_translation` calls the hooks of the
session's database with the versions it just wrote (:func:`run`).  A hook that raises rolls the
whole write back, as any other failure of the transaction would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

__all__ = ["StoredVersions", "VersionHook", "register", "unregister", "run"]


@dataclass(frozen=True)
class StoredVersions:
    """What one ``save_translation`` wrote: the versions, for which site, manufacturer and order."""

    session: Session | Connection
    site_id: str
    manufacturer_id: str
    order_id: str
    versions: Sequence[dict[str, Any]]
    now: datetime


VersionHook = Callable[[StoredVersions], None]
_lock = threading.Lock()
_hooks: dict[tuple[str, str], VersionHook] = {}


def _database(bind: Engine | Connection) -> str:
    return bind.engine.url.render_as_string(hide_password=True)


def register(engine: Engine, name: str, hook: VersionHook) -> None:
    """Run ``hook`` after every write to ``engine``'s database (one per name: a later one replaces it)."""
    with _lock:
        _hooks[(_database(engine), name)] = hook


def unregister(engine: Engine, name: str) -> None:
    with _lock:
        _hooks.pop((_database(engine), name), None)


def run(written: StoredVersions) -> None:
    """Call the hooks registered for the session's database (in registration order)."""
    if not _hooks or not written.versions:
        return
    session = written.session
    bind = session.connection() if isinstance(session, Session) else session
    key = _database(bind)
    with _lock:
        hooks = [hook for (database, _), hook in _hooks.items() if database == key]
    for hook in hooks:
        hook(written)
