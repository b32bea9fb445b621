"""Destination names: one FIFO outbox queue per (site or manufacturer, channel).

``<site>/mllp`` (the site's HL7v2 engine), ``<site>/fhir`` (the site's FHIR server, push),
``<manufacturer>/webhook`` and ``<subscription id>/subscription`` (a FHIR Subscription's rest-hook).
Intake names the queues it writes to (:mod:`gateway.intake.pipeline`);
the worker builds a sender per name (:mod:`gateway.delivery.senders`).
"""

from __future__ import annotations

__all__ = ["mllp_destination", "fhir_destination", "webhook_destination", "subscription_destination"]


def mllp_destination(site_id: str) -> str:
    return f"{site_id}/mllp"


def fhir_destination(site_id: str) -> str:
    return f"{site_id}/fhir"


def webhook_destination(manufacturer_id: str) -> str:
    return f"{manufacturer_id}/webhook"


def subscription_destination(subscription_id: str) -> str:
    return f"{subscription_id}/subscription"
