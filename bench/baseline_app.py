"""The baseline server: a minimal FastAPI app on the same uvicorn, engine and database as the gateway.

- ``POST /v1/orders`` and ``POST /v1/orders/{order_id}/events``: parse the same JSON body and insert
  one row (the ingest baseline).
- ``GET /bare/Task?gt=<µs>&count=N``: the stored bodies of the first ``count`` Tasks updated after
  ``gt``, by the same index the gateway has, as a JSON array (the polling baseline; it reads the
  gateway's ``fhir_resource_current`` table, with no tenant check and no Bundle).

Run: ``python -m bench.baseline_app --database-url URL --port PORT [--loop auto] [--http auto]``
(``bench.servers`` passes the event loop and HTTP parser the gateway is given, so both run alike).
"""

from __future__ import annotations

import argparse
from typing import Any

import sqlalchemy as sa
from fastapi import Body, FastAPI, Response

from gateway.store.db import make_engine

__all__ = ["create_baseline_app", "main"]

_META = sa.MetaData()
_ROWS = sa.Table(
    "bench_baseline_row",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)


def create_baseline_app(database_url: str) -> FastAPI:
    engine = make_engine(database_url)
    _META.create_all(engine)
    app = FastAPI(title="bench baseline")

    def insert(order_id: str, body: dict[str, Any]) -> dict[str, Any]:
        import orjson

        with engine.begin() as conn:
            conn.execute(_ROWS.insert().values(order_id=order_id, body=orjson.dumps(body).decode()))
        return {"ok": True}

    @app.post("/v1/orders", status_code=201)
    def post_order(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return insert(str(body.get("order_id")), body)

    @app.post("/v1/orders/{order_id}/events", status_code=201)
    def post_event(order_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return insert(order_id, body)

    @app.get("/bare/Task")
    def bare_tasks(gt: int, count: int = 100) -> Response:
        query = sa.text(
            "SELECT body FROM fhir_resource_current WHERE resource_type = 'Task' "
            "AND last_updated_us > :gt ORDER BY last_updated_us, resource_id LIMIT :n"
        )
        with engine.connect() as conn:
            bodies = [bytes(r[0]) for r in conn.execute(query, {"gt": gt, "n": count})]
        return Response(b"[" + b",".join(bodies) + b"]", media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"))
    args = parser.parse_args()
    uvicorn.run(
        create_baseline_app(args.database_url),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        log_level="warning",
        loop=args.loop,
        http=args.http,
    )


if __name__ == "__main__":
    main()
