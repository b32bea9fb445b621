"""The serving process's audit trail: reads through a write-behind batch, and the head digest log.

A read that returned patient data calls :meth:`AuditTrail.note_read` (a list append under a lock:
microseconds, no SQL on the request's path).  A background thread appends the waiting reads to the
chain in ONE transaction of its own every ``audit_read_flush_s`` (at most a second late), and once
more when the trail is closed (the app's lifespan ends: ``cgt-gateway serve`` shutting down).  The
patients of FHIR resources are found by the thread, from the bodies the read already had in memory.

Should ``audit_read_max_pending`` reads be waiting (the database stalled), the reading request
appends the batch itself: the read waits, no record is dropped.  A failed batch is kept and tried
again at the next turn.

The same thread logs the chain head (sequence number and hash only) every ``audit_head_log_s`` and
at close, so the digest can be anchored outside the database (``audit verify --anchor SEQ:SHA256``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.chain import append, read_head
from gateway.audit.index import index_refs
from gateway.audit.patients import fhir_patients
from gateway.audit.records import Actor, AuditEntry
from gateway.context import utc_now
from gateway.store.db import write_session
from gateway.store.search_params import to_us

__all__ = ["AuditTrail", "PendingRead", "stop_all_threads"]

log = logging.getLogger("cgt_gateway.audit")

# Trails whose thread runs, by id: an app whose lifespan never runs (a test's uvicorn with lifespan off,
# a TestClient used without ``with``) starts its thread lazily on the first read and never closes it.
_RUNNING: dict[int, AuditTrail] = {}
#: A thread started by a read (no lifespan ran) ends after this many turns with nothing to append.
LAZY_IDLE_TURNS = 10
_RUNNING_LOCK = threading.Lock()


def stop_all_threads(timeout_s: float = 10.0) -> None:
    """Stop every running trail's thread without appending what waits (reads of an app that is going
    away with its engine).  For whoever disposes an engine an app was built on (the test fixtures);
    a served app's lifespan calls :meth:`AuditTrail.close` instead."""
    with _RUNNING_LOCK:
        trails = list(_RUNNING.values())
        _RUNNING.clear()
    for trail in trails:
        trail._stop.set()
    for trail in trails:
        if trail._thread is not None:
            trail._thread.join(timeout=timeout_s)


@dataclass(frozen=True, slots=True)
class PendingRead:
    actor: Actor
    at_us: int
    action: str
    operation: str
    entities: tuple[str, ...]
    patients: tuple[str, ...]
    resources: tuple[tuple[str, str, bytes], ...]  # FHIR (type, id, body): entities and patients, later

    def entry(self) -> AuditEntry:
        entities = (*self.entities, *(f"{t}/{i}" for t, i, _ in self.resources))
        patients = (*self.patients, *fhir_patients(self.resources)) if self.resources else self.patients
        return AuditEntry.of(self.actor, self.at_us, self.action, self.operation, entities=entities,
                             patients=patients)


@dataclass
class AuditTrail:
    engine: Engine
    enabled: bool = True
    flush_s: float = 0.5
    max_pending: int = 10_000
    head_log_s: float = 300.0
    clock: Callable[[], datetime] = utc_now
    _pending: list[PendingRead] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flush_lock: threading.Lock = field(default_factory=threading.Lock)  # one batch at a time
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last_head_log: float = 0.0

    # ------------------------------------------------------------------ the request's side

    def note_read(self, actor: Actor, operation: str, *, action: str = "read",
                  entities: Sequence[str] = (), patients: Sequence[str] = (),
                  resources: Sequence[tuple[str, str, bytes]] = ()) -> None:
        """Record (within ``flush_s``) that ``actor`` read patient data.  Call it only when the read
        returned some (an empty result records nothing)."""
        if not self.enabled:
            return
        pending = PendingRead(actor, to_us(self.clock()), action, operation, tuple(entities), tuple(patients),
                              tuple(resources))
        with self._lock:
            self._pending.append(pending)
            full = len(self._pending) >= self.max_pending
            idle = self._thread is None
        if idle:
            self.start(lazy=True)
        if full:
            self._append_reads()

    # ------------------------------------------------------------------ the batch

    def flush(self) -> int:
        """Append every waiting read in one transaction, then index the records written since the last
        turn (:func:`gateway.audit.index.index_refs`); the number of reads appended (kept on failure)."""
        appended = self._append_reads()
        try:
            index_refs(self.engine)
        except SQLAlchemyError as exc:
            log.warning("audit references not indexed; retrying", extra={"error": type(exc).__name__})
        return appended

    def _append_reads(self) -> int:
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                entries = [p.entry() for p in batch]
                with write_session(self.engine) as session:
                    append(session, entries)
            except SQLAlchemyError as exc:
                with self._lock:
                    self._pending[:0] = batch  # first in, first appended, next turn
                log.warning("audit read batch not written; retrying", extra={"reads": len(batch),
                                                                              "error": type(exc).__name__})
                return 0
            return len(batch)

    def log_head(self) -> tuple[int, str] | None:
        """Log the chain head (sequence number and SHA-256 only); returns it."""
        try:
            with self.engine.connect() as conn:
                head = read_head(conn)
        except SQLAlchemyError as exc:
            log.warning("audit chain head not readable", extra={"error": type(exc).__name__})
            return None
        if head is not None:
            log.info("audit chain head", extra={"audit_seq": head[0], "audit_sha256": head[1]})
        return head

    # ------------------------------------------------------------------ the thread

    def start(self, *, lazy: bool = False) -> None:
        """Run the thread (the app's lifespan calls this).  ``lazy``: started by a read because no
        lifespan ran (a test's app, an embedded one): such a thread ends after
        :data:`LAZY_IDLE_TURNS` turns with nothing to append, and the next read starts it again, so an
        app that is dropped without :meth:`close` leaves no thread behind for long."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, args=(lazy,), name="cgt-audit", daemon=True)
        with _RUNNING_LOCK:
            _RUNNING[id(self)] = self
        self._thread.start()

    def _run(self, lazy: bool = False) -> None:
        import time

        self._last_head_log = time.monotonic()
        idle_turns = 0
        while not self._stop.wait(self.flush_s):
            try:
                idle_turns = 0 if self.flush() else idle_turns + 1
                if lazy and idle_turns >= LAZY_IDLE_TURNS and self._end_if_idle():
                    return
                if self.head_log_s and time.monotonic() - self._last_head_log >= self.head_log_s:
                    self._last_head_log = time.monotonic()
                    self.log_head()
            except Exception as exc:  # a bug must not end the thread: the reads stay queued  # noqa: BLE001
                log.error("audit thread failed a turn", extra={"error": type(exc).__name__})

    def _end_if_idle(self) -> bool:
        """End a lazily started thread when no read waits (under the lock ``note_read`` takes)."""
        with self._lock:
            if self._pending:
                return False
            self._thread = None
        with _RUNNING_LOCK:
            _RUNNING.pop(id(self), None)
        return True

    def close(self) -> None:
        """Stop the thread, append what waits, log the head (the app's lifespan ends)."""
        self._stop.set()
        with _RUNNING_LOCK:
            _RUNNING.pop(id(self), None)
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        if self.enabled:
            self.flush()
        if self.enabled:
            self.log_head()
