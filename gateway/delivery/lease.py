"""Destination leases: one delivery worker at a time holds a destination's queue.

A lease is a row (``destination_lease``) that expires if its worker dies.  It is taken, renewed or
taken over in one statement, ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (SQLite and PostgreSQL):
the primary key settles a race of two first leases, the conflict's ``WHERE`` a race of two
takeovers, and no key violation is ever raised (so the database logs none).

- :func:`take_lease` / :func:`give_back_lease` run in the caller's transaction (the worker's hot
  path, on its destination's connection); :func:`acquire_lease` / :func:`release_lease` are the
  same statements in a session of their own, committed.
- :class:`LeaseBook` is one worker's view of its leases: when each runs out, as it last set it, so
  a lease is renewed once half of it has run rather than per message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from gateway.delivery.outbox import DestinationLease

__all__ = ["take_lease", "give_back_lease", "give_back_leases", "acquire_lease", "release_lease", "LeaseBook"]

_L: sa.Table = DestinationLease.__table__  # type: ignore[attr-defined]


def _lease_upsert(dialect: Any) -> Any:
    """INSERT the lease, or take it over if it is ours or has expired; a live one of another stays."""
    stmt = dialect.insert(_L).values(destination=bindparam("destination"), owner=bindparam("owner"),
                                     expires_at=bindparam("expires_at"))
    return stmt.on_conflict_do_update(
        index_elements=[_L.c.destination],
        set_={"owner": stmt.excluded.owner, "expires_at": stmt.excluded.expires_at},
        where=sa.or_(_L.c.owner == stmt.excluded.owner, _L.c.expires_at < bindparam("now")),
    ).returning(_L.c.destination)  # a row back if inserted or taken over (rowcount is not portable)


_TAKE = {"postgresql": _lease_upsert(postgresql), "sqlite": _lease_upsert(sqlite)}
_RELEASE = sa.delete(_L).where(_L.c.destination == bindparam("destination"), _L.c.owner == bindparam("owner"))
_RELEASE_ALL = sa.delete(_L).where(_L.c.owner == bindparam("owner"))


def take_lease(connection: Connection, destination: str, owner: str, now: datetime, seconds: float) -> bool:
    """Take or renew the lease on ``destination`` in the connection's transaction (the caller commits);
    False if another live worker holds it.  One statement: the primary key settles a race of two
    first leases, the conflict's WHERE a race of two takeovers, and no key violation is ever raised."""
    result = connection.execute(_TAKE[connection.dialect.name], {
        "destination": destination, "owner": owner, "now": now,
        "expires_at": now + timedelta(seconds=seconds)})
    return result.first() is not None


def give_back_lease(connection: Connection, destination: str, owner: str) -> None:
    """Delete our lease on ``destination`` (the caller commits)."""
    connection.execute(_RELEASE, {"destination": destination, "owner": owner})


def give_back_leases(connection: Connection, owner: str) -> None:
    """Delete every lease ``owner`` holds (the caller commits)."""
    connection.execute(_RELEASE_ALL, {"owner": owner})


def acquire_lease(session: Session, destination: str, owner: str, now: datetime, seconds: float) -> bool:
    """Take or renew the lease on ``destination`` and commit; False if another live worker holds it.

    The statement of :func:`take_lease`, in the session's transaction.
    """
    held = take_lease(session.connection(), destination, owner, now, seconds)
    session.commit()
    return held


def release_lease(session: Session, destination: str, owner: str) -> None:
    """Give back our lease on ``destination`` and commit (nothing happens if it is not ours)."""
    give_back_lease(session.connection(), destination, owner)
    session.commit()


@dataclass
class LeaseBook:
    """One worker's leases, as it last wrote them: it renews one only once half of it has run."""

    owner: str
    seconds: float
    _until: dict[str, datetime] = field(default_factory=dict)  # our leases' expiry, as we last set them
    _held_elsewhere: set[str] = field(default_factory=set)  # another worker holds these

    def fresh(self, destination: str, now: datetime) -> bool:
        """True if we hold the lease on ``destination`` and less than half of it has run."""
        held_until = self._until.get(destination)
        half = timedelta(seconds=self.seconds) / 2
        return held_until is not None and held_until - now >= half

    def held_elsewhere(self, destination: str) -> bool:
        """True if another worker held ``destination`` when we last tried to take it."""
        return destination in self._held_elsewhere

    def hold(self, connection: Connection, destination: str, now: datetime) -> bool:
        """True if our lease on ``destination`` runs long enough; else take or renew it, in the
        connection's transaction (committed by the caller).  Renewed once half of it has run."""
        if self.fresh(destination, now):
            return True
        if not take_lease(connection, destination, self.owner, now, self.seconds):
            self._until.pop(destination, None)
            self._held_elsewhere.add(destination)
            return False
        self._held_elsewhere.discard(destination)
        self._until[destination] = now + timedelta(seconds=self.seconds)
        return True

    def renew(self, engine: Engine, destination: str, now: datetime) -> bool:
        """Renew the lease on ``destination`` in a transaction of its own; False if it was lost."""
        with Session(engine) as session:
            held = acquire_lease(session, destination, self.owner, now, self.seconds)
        if held:
            self._until[destination] = now + timedelta(seconds=self.seconds)
        else:
            self._until.pop(destination, None)
        return held

    def forget(self, destination: str) -> None:
        """Our lease on ``destination`` was given back, or may not have been written: take it next time."""
        self._until.pop(destination, None)

    def give_back(self, connection: Connection, destination: str) -> None:
        """Give the lease on ``destination`` back, in the connection's transaction (the caller commits)."""
        self._until.pop(destination, None)
        give_back_lease(connection, destination, self.owner)

    def give_back_all(self, engine: Engine) -> None:
        """Give every lease back (a clean stop), so another worker need not wait for them to expire."""
        self._until.clear()
        with engine.connect() as connection:
            give_back_leases(connection, self.owner)
            connection.commit()
