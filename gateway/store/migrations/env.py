"""Alembic environment: runs against the engine passed by ``gateway.store.db.migrate`` (or the settings')."""

from __future__ import annotations

from alembic import context

from gateway.store.db import make_engine, metadata

config = context.config
target_metadata = metadata()


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # plain `alembic` command line: use the configured database
        from gateway.config import load_settings

        engine = make_engine(load_settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():  # pragma: no cover
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations()
