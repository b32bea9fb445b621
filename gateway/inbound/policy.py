"""The product's site-request policy applied to an order: does the gateway decide, or the manufacturer?

A rule (``ProductConfig.site_requests``, see :class:`gateway.config.SiteRequestPolicy`) is ``auto``,
``manufacturer`` or ``{auto_until: <status>}``: automatic while the order's lifecycle *stage* (the last
stage reached; for an order on hold, the stage it is held at) is at or before that status.
"""

from __future__ import annotations

from gateway.config import AutoUntil, ProductConfig
from gateway.intake.lifecycle import STAGES, LifecycleState
from mappings.domain import OrderStatus
from mappings.site_request import SiteRequestKind

__all__ = ["is_automatic"]

_RANK = {stage: rank for rank, stage in enumerate(STAGES)}


def is_automatic(product: ProductConfig, kind: SiteRequestKind, state: LifecycleState) -> bool:
    """True when the gateway applies a request of ``kind`` on an order in ``state`` without asking."""
    rule = product.site_requests.rule(kind)
    if isinstance(rule, AutoUntil):
        return _RANK[state.stage] <= _RANK[OrderStatus(rule.auto_until)]
    return rule == "auto"
