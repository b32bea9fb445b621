"""The queues page: per destination depth, oldest pending age, delivered/dead/skipped counts and a
throughput sparkline for the last hour (inline SVG, drawn here), and the dead-letter list.

Bounded: the counts are one grouped query (:func:`gateway.delivery.outbox.queue_stats`), the
sparkline one grouped query over the last hour's deliveries, the dead letters a keyset page.
Retry and skip are :func:`gateway.delivery.outbox.replay` and :func:`~gateway.delivery.outbox.skip`,
the functions behind the admin API and CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from gateway.delivery.outbox import MessageState, OutboxMessage, list_messages, queue_stats
from gateway.store.tables import as_utc

__all__ = ["BUCKETS", "BUCKET_MINUTES", "DEAD_PAGE", "QueueRow", "queue_rows", "sparkline_svg",
           "dead_letters"]

BUCKETS = 20
BUCKET_MINUTES = 3  # 20 buckets of 3 minutes: the last hour
DEAD_PAGE = 50
MAX_DESTINATIONS = 500


@dataclass
class QueueRow:
    destination: str
    pending: int = 0
    oldest_pending_s: float | None = None
    delivered: int = 0
    dead: int = 0
    skipped: int = 0
    per_bucket: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    svg: str = ""


def queue_rows(session: Session, now: datetime) -> list[QueueRow]:
    rows: dict[str, QueueRow] = {}
    for destination, state, count, oldest in queue_stats(session):
        row = rows.setdefault(destination, QueueRow(destination))
        if state == MessageState.pending:
            row.pending = count
            if oldest is not None:
                row.oldest_pending_s = max(0.0, (now - as_utc(oldest)).total_seconds())
        elif state == MessageState.delivered:
            row.delivered = count
        elif state == MessageState.dead:
            row.dead = count
        elif state == MessageState.skipped:
            row.skipped = count
    start = now - timedelta(minutes=BUCKETS * BUCKET_MINUTES)
    finished = col(OutboxMessage.finished_at)
    columns = []
    for i in range(BUCKETS):
        low = start + timedelta(minutes=i * BUCKET_MINUTES)
        high = low + timedelta(minutes=BUCKET_MINUTES)
        columns.append(sa.func.sum(sa.case(((finished >= low) & (finished < high), 1), else_=0)))
    query = (sa.select(col(OutboxMessage.destination), *columns)
             .where(col(OutboxMessage.state) == MessageState.delivered.value, finished >= start)
             .group_by(col(OutboxMessage.destination)))
    for destination, *counts in session.execute(query).all():
        row = rows.setdefault(destination, QueueRow(destination))
        row.per_bucket = [int(c or 0) for c in counts]
    ordered = sorted(rows.values(), key=lambda r: r.destination)[:MAX_DESTINATIONS]
    for row in ordered:
        row.svg = sparkline_svg(row.per_bucket, row.destination)
    return ordered


def sparkline_svg(counts: list[int], label: str, width: int = 120, height: int = 24) -> str:
    """A small bar chart of ``counts`` (oldest first) as inline SVG; the title says what it shows.
    Only numbers and the escaped label go in: the caller's template marks it safe."""
    from markupsafe import escape

    peak = max(counts) if counts else 0
    bar = width / max(len(counts), 1)
    bars = []
    for i, count in enumerate(counts):
        h = 0.0 if count == 0 else max(1.0, (height - 2) * count / peak)
        bars.append(f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                    f'height="{h:.1f}"/>')
    total = sum(counts)
    title = escape(f"{label}: {total} delivered in the last hour (peak {peak} per {BUCKET_MINUTES} minutes)")
    return (f'<svg class="spark" role="img" aria-label="{title}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
            f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" class="axis"/>'
            + "".join(bars) + "</svg>")


def dead_letters(session: Session, destination: str | None, after_id: int | None) -> list[OutboxMessage]:
    return list_messages(session, destination=destination, state=MessageState.dead.value,
                         after_id=after_id, limit=DEAD_PAGE)
