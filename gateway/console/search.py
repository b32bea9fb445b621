"""The console's search: one box for an order id, a CoI, a DIN, an MRN, an HL7 control id or a delivery id.

The query arrives in a POST body (never in a URL) and is tried as each kind it could be; the answer
lists orders the principal may see, each with the kinds it matched, and links by order id only.
MRN search is for site and admin users (a manufacturer's token never searches by MRN, as its API
never lists orders by patient).  Work is bounded: at most :data:`MAX_RESULTS` orders, one indexed
query per kind (the indexes on ``cgt_order.coi``, ``patient_coi.mrn`` and ``outbox_message.control_id``
are the console's, :mod:`gateway.console.tables`; a DIN uses the identity claims' unique index).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from gateway.auth import Principal
from gateway.console.scope import order_filters
from gateway.delivery.outbox import OutboxMessage
from gateway.errors import CoiError
from gateway.intake.coi import looks_like_another, normalize_product_coi
from gateway.store.tables import IdentityClaimRow, OrderRow, PatientCoiRow
from terminology.isbt128 import normalize_din

__all__ = ["MAX_QUERY", "MAX_RESULTS", "SearchHit", "SearchResult", "search_orders"]

MAX_QUERY = 200  # characters; a longer query is refused before any work
MAX_RESULTS = 50


@dataclass
class SearchHit:
    order: OrderRow
    matched: list[str] = field(default_factory=list)  # e.g. ["order id", "CoI"]


@dataclass
class SearchResult:
    query_kinds: list[str]  # the kinds the query was tried as
    hits: list[SearchHit]
    truncated: bool


def _coi_forms(text: str) -> set[str]:
    """The stored forms a CoI could take: the ISBT 128 normal form (with or without its check
    character, with or without the ``&/`` data identifier, any case) and the text itself (a
    manufacturer-format CoI is stored as sent, stripped)."""
    forms = {text}
    for candidate in (text, text.upper()):
        try:
            forms.add(normalize_product_coi(candidate, "isbt128", None))
        except CoiError:
            pass
    return forms


def _din_form(text: str) -> str | None:
    for candidate in (text, text.upper()):
        try:
            return normalize_din(candidate)
        except ValueError:
            continue
    return None


def search_orders(session: Session, principal: Principal, raw: str) -> SearchResult:
    text = raw.strip()
    hits: dict[int, SearchHit] = {}
    kinds: list[str] = []
    truncated = False

    def add(query: object, kind: str) -> None:
        nonlocal truncated
        rows = session.exec(query.where(*order_filters(principal))  # type: ignore[attr-defined]
                            .order_by(col(OrderRow.updated_at).desc()).limit(MAX_RESULTS + 1)).all()
        truncated = truncated or len(rows) > MAX_RESULTS
        for row in rows[:MAX_RESULTS]:
            assert row.id is not None
            hit = hits.setdefault(row.id, SearchHit(row))
            if kind not in hit.matched:
                hit.matched.append(kind)

    if not text or looks_like_another(text):
        return SearchResult([], [], False)
    if len(text) <= 64:
        kinds.append("order id")
        add(select(OrderRow).where(col(OrderRow.order_id) == text), "order id")
        kinds.append("CoI")
        add(select(OrderRow).where(col(OrderRow.coi).in_(sorted(_coi_forms(text)))), "CoI")
        din = _din_form(text)
        if din is not None:
            kinds.append("DIN")
            add(select(OrderRow).join(IdentityClaimRow, col(IdentityClaimRow.order_pk) == col(OrderRow.id))
                .where(col(IdentityClaimRow.kind) == "din", col(IdentityClaimRow.scope) == "",
                       col(IdentityClaimRow.value_sha256) == hashlib.sha256(din.encode("utf-8")).hexdigest(),
                       col(IdentityClaimRow.value) == din), "DIN")  # the unique (kind, scope, sha) index
        if principal.role in ("site", "admin"):
            kinds.append("MRN")
            add(select(OrderRow).join(PatientCoiRow, (col(PatientCoiRow.manufacturer_id)
                                                      == col(OrderRow.manufacturer_id))
                                      & (col(PatientCoiRow.coi) == col(OrderRow.coi))
                                      & (col(PatientCoiRow.site_id) == col(OrderRow.site_id)))
                .where(col(PatientCoiRow.mrn) == text), "MRN")
        kinds.append("HL7 control id")
        add(_by_message(col(OutboxMessage.control_id) == text), "HL7 control id")
    if text.isascii() and text.isdigit() and len(text) <= 18:
        kinds.append("delivery id")
        add(_by_message(col(OutboxMessage.id) == int(text)), "delivery id")
    ordered = sorted(hits.values(), key=lambda h: h.order.updated_at, reverse=True)
    return SearchResult(kinds, ordered[:MAX_RESULTS], truncated or len(ordered) > MAX_RESULTS)


def _by_message(condition: object) -> object:
    """Orders with an outbox message matching ``condition`` (the message's order, not its payload)."""
    messages = (select(OutboxMessage.manufacturer_id, OutboxMessage.order_id)
                .where(condition).limit(MAX_RESULTS).subquery())
    return select(OrderRow).join(messages, (messages.c.manufacturer_id == col(OrderRow.manufacturer_id))
                                 & (messages.c.order_id == col(OrderRow.order_id)))
