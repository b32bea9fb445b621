"""Statements run on the DB-API cursor (:mod:`gateway.store.prepared_sql`) inside the session's
transaction: they store and read back what ``Connection.execute`` would, roll back with the
transaction, raise SQLAlchemy's ``IntegrityError`` on a unique constraint (intake's retry depends on
it), and never run outside a transaction on their own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from gateway.store import prepared_sql
from gateway.store.db import write_session
from gateway.store.tables import OrderRow

_O: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
_INSERT = _O.insert().returning(_O.c.id)
_SELECT = sa.select(_O.c.id, _O.c.state, _O.c.created_at, _O.c.last_sequence).where(
    _O.c.order_id == sa.bindparam("o"))
_BUMP = _O.update().where(_O.c.id == sa.bindparam("k_pk")).values(
    last_sequence=sa.bindparam("k_seq", type_=_O.c.last_sequence.type),
    state=sa.bindparam("k_state", type_=_O.c.state.type))
NOW = datetime(2026, 11, 21, 10, 30, 0, 123456, tzinfo=UTC)


def _order(order_id: str) -> dict:
    return {"manufacturer_id": "acme-bio", "order_id": order_id, "site_id": "site-a", "product_code": "P",
            "coi": "C-" + order_id, "status": "placed", "state": {"status": "placed", "n": [1, 2]},
            "body": {"order_id": order_id}, "body_sha256": "0" * 64, "last_sequence": 0,
            "created_at": NOW, "updated_at": NOW}


def _read_back(engine, order_id: str):
    with engine.connect() as conn:
        return conn.execute(_SELECT, {"o": order_id}).one()


def test_rows_written_and_read_on_the_cursor_equal_sqlalchemys(engine):
    with write_session(engine) as session:
        conn = session.connection()
        assert prepared_sql.prepared_for(conn.dialect, _INSERT, tuple(sorted(_order("a")))) is not None
        pk = prepared_sql.fetch_rows(conn, _INSERT, _order("a"))[0].id
        conn.execute(_O.insert(), _order("b"))  # the same row through SQLAlchemy, for comparison
        fast = prepared_sql.fetch_rows(conn, _SELECT, {"o": "a"})[0]
        slow = conn.execute(_SELECT, {"o": "b"}).one()
        assert fast.id == pk and fast._asdict().keys() == slow._asdict().keys()
        assert (fast.state, fast.created_at, fast.last_sequence) == (slow.state, slow.created_at,
                                                                     slow.last_sequence)
        assert fast.state == {"status": "placed", "n": [1, 2]}  # JSON decoded, as SQLAlchemy does
        assert prepared_sql.execute(conn, _BUMP, {"k_pk": pk, "k_seq": 3, "k_state": {"x": 1}}) == 1
        assert prepared_sql.execute(conn, _BUMP, {"k_pk": -1, "k_seq": 3, "k_state": {}}) == 0
    stored = _read_back(engine, "a")
    assert (stored.id, stored.last_sequence, stored.state) == (pk, 3, {"x": 1})
    assert stored.created_at.replace(tzinfo=UTC) == NOW  # the timestamp stored as SQLAlchemy stores it
    assert stored.created_at.replace(tzinfo=UTC) == _read_back(engine, "b").created_at.replace(tzinfo=UTC)


def test_cursor_writes_belong_to_the_session_transaction(engine):
    with pytest.raises(RuntimeError), write_session(engine) as session:
        conn = session.connection()
        prepared_sql.fetch_rows(conn, _INSERT, _order("gone"))
        prepared_sql.executemany(conn, _O.insert(), [_order("gone-1"), _order("gone-2")])
        assert len(prepared_sql.fetch_rows(conn, _SELECT, {"o": "gone-2"})) == 1  # visible inside
        raise RuntimeError("roll back")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(_O)).scalar() == 0


def test_a_unique_conflict_on_the_cursor_is_sqlalchemys_integrity_error(engine):
    with write_session(engine) as session:
        prepared_sql.fetch_rows(session.connection(), _INSERT, _order("dup"))
    with pytest.raises(sa.exc.IntegrityError), write_session(engine) as session:
        prepared_sql.fetch_rows(session.connection(), _INSERT, _order("dup"))
    with pytest.raises(sa.exc.IntegrityError), write_session(engine) as session:
        prepared_sql.executemany(session.connection(), _O.insert(), [_order("x"), _order("x")])
    with engine.connect() as conn:  # the failed transactions left nothing behind
        assert conn.execute(sa.select(sa.func.count()).select_from(_O)).scalar() == 1


def test_without_a_transaction_writes_go_through_sqlalchemy_and_are_not_committed(engine):
    with engine.connect() as conn:
        assert not conn.in_transaction()
        prepared_sql.fetch_rows(conn, _INSERT, _order("auto"))
        assert conn.in_transaction()  # SQLAlchemy began one (autobegin); nothing autocommitted
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(_O)).scalar() == 0


def test_several_statements_at_once_write_in_order_and_conflicts_are_integrity_errors(engine, monkeypatch):
    bump = {"k_pk": 0, "k_seq": 7, "k_state": {"y": 2}}
    with write_session(engine) as session:
        conn = session.connection()
        pk = prepared_sql.fetch_rows(conn, _INSERT, _order("first"))[0].id
        calls: list[str] = []
        if engine.dialect.name == "postgresql":  # one pipeline: executemany is not called per statement
            monkeypatch.setattr(prepared_sql, "executemany", lambda *a: calls.append("executemany"))
        prepared_sql.executemany_all(conn, [(_O.insert(), [_order("p1"), _order("p2")]), (_BUMP, []),
                                            (_BUMP, [{**bump, "k_pk": pk}])])
        monkeypatch.undo()
        assert calls == []
        rows = {r.id: r for r in (prepared_sql.fetch_rows(conn, _SELECT, {"o": o})[0] for o in ("p1", "p2"))}
        assert len(rows) == 2
    assert (_read_back(engine, "first").last_sequence, _read_back(engine, "first").state) == (7, {"y": 2})
    with pytest.raises(sa.exc.IntegrityError), write_session(engine) as session:
        prepared_sql.executemany_all(session.connection(), [(_BUMP, [{**bump, "k_pk": pk}]),
                                                            (_O.insert(), [_order("p1")])])
    with engine.connect() as conn:  # the failed transaction left nothing behind
        assert conn.execute(sa.select(sa.func.count()).select_from(_O)).scalar() == 3
        assert _read_back(engine, "first").last_sequence == 7
