"""The migrations build exactly the schema the SQLModel metadata describes (both backends)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.store.db import alembic_config, metadata


def test_migrations_match_the_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata())
    assert diff == []


def test_spine_revision_is_the_root():
    scripts = ScriptDirectory.from_config(alembic_config())
    spine = scripts.get_revision("0001_spine")
    assert spine is not None and spine.down_revision is None
    assert list(scripts.get_bases()) == ["0001_spine"]
    assert len(scripts.get_heads()) == 1


def test_events_are_append_only_and_unique(engine):
    import pytest
    import sqlalchemy as sa

    tables = metadata().tables
    order_uniques = {
        tuple(c.name for c in u.columns)
        for u in tables["cgt_order"].constraints
        if isinstance(u, sa.UniqueConstraint)
    }
    event_uniques = {
        tuple(c.name for c in u.columns)
        for u in tables["order_event"].constraints
        if isinstance(u, sa.UniqueConstraint)
    }
    coi_uniques = {
        tuple(c.name for c in u.columns)
        for u in tables["patient_coi"].constraints
        if isinstance(u, sa.UniqueConstraint)
    }
    assert ("manufacturer_id", "order_id") in order_uniques
    assert {("manufacturer_id", "event_id"), ("order_pk", "sequence")} <= event_uniques
    assert ("manufacturer_id", "coi") in coi_uniques
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        for _ in range(2):
            conn.execute(
                tables["patient_coi"]
                .insert()
                .values(manufacturer_id="m", coi="C", site_id="s", mrn="x", created_at=sa.func.now())
            )
