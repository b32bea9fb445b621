"""Issue 13: the per-product site-request policy (``ProductConfig.site_requests``) and the lifecycle
event each request kind becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from gateway.config import AutoUntil, ProductConfig, SiteRequestPolicy, load_settings
from gateway.inbound.policy import is_automatic
from gateway.inbound.site_events import InvalidRequest, check_times, planned_event, requested_values
from gateway.intake.lifecycle import STAGES, LifecycleState
from mappings.domain import EventType, OrderStatus

S = OrderStatus
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DEMO = {"cancel": {"auto_until": "apheresis_scheduled"}, "hold": {"auto_until": "collected"},
        "reschedule": "manufacturer", "infused": "auto"}


def product(policy: object = None) -> ProductConfig:
    fields: dict = {"code": "P", "name": "p", "coi_format": "isbt128", "shelf_life_days": 10}
    if policy is not None:
        fields["site_requests"] = policy
    return ProductConfig(**fields)


def at(stage: OrderStatus, status: OrderStatus | None = None) -> LifecycleState:
    return LifecycleState(status=status or stage, stage=stage, stage_occurred_at=NOW - timedelta(hours=1))


def test_the_demo_products_use_the_issues_policy():
    settings = load_settings()
    for manufacturer_id, code in (("acme-bio", "CART-CD19"), ("nova-cell", "GT-HEM-01")):
        found = settings.product(manufacturer_id, code)
        assert found is not None
        assert found.site_requests == SiteRequestPolicy.model_validate(DEMO)


@pytest.mark.parametrize("stage", STAGES[:-1])
def test_auto_until_is_inclusive_and_follows_the_stage(stage):
    demo = product(DEMO)
    rank = STAGES.index(stage)
    assert is_automatic(demo, "cancel", at(stage)) is (rank <= STAGES.index(S.apheresis_scheduled))
    assert is_automatic(demo, "hold", at(stage)) is (rank <= STAGES.index(S.collected))
    assert is_automatic(demo, "release_hold", at(stage, S.on_hold)) is (rank <= STAGES.index(S.collected))
    assert not is_automatic(demo, "reschedule", at(stage))
    assert not is_automatic(demo, "change", at(stage))
    assert is_automatic(demo, "infused", at(stage))
    assert is_automatic(demo, "order_number", at(stage))


def test_an_order_on_hold_is_judged_by_the_stage_it_is_held_at():
    demo = product(DEMO)
    assert is_automatic(demo, "cancel", at(S.confirmed, S.on_hold))
    assert not is_automatic(demo, "cancel", at(S.manufacturing, S.on_hold))


def test_defaults_when_keys_are_absent():
    empty = product()
    state = at(S.placed)
    assert [is_automatic(empty, kind, state) for kind in
            ("cancel", "hold", "release_hold", "reschedule", "change", "infused", "order_number")] == [
        False, False, False, False, False, True, True]
    follows = product({"hold": "auto", "reschedule": "auto"})
    assert is_automatic(follows, "release_hold", state) and is_automatic(follows, "change", state)
    split = product({"hold": "auto", "release_hold": "manufacturer"})
    assert not is_automatic(split, "release_hold", state)
    assert product({"cancel": {"auto_until": "placed"}}).site_requests.rule("cancel") == AutoUntil(
        auto_until="placed")


@pytest.mark.parametrize(("policy", "where", "says"), [
    ({"cancle": "auto"}, ("site_requests", "cancle"), "Extra inputs"),
    ({"order_number": "manufacturer"}, ("site_requests", "order_number"), "Extra inputs"),
    ({"cancel": "sometimes"}, ("site_requests", "cancel"), "must be 'auto', 'manufacturer' or"),
    ({"cancel": {"auto_until": "bogus"}}, ("site_requests", "cancel", "auto_until"), "not a stage"),
    ({"hold": {"auto_until": "on_hold"}}, ("site_requests", "hold", "auto_until"), "not a stage"),
    ({"hold": {"auto_until": "collected", "x": 1}}, ("site_requests", "hold"), "must be 'auto'"),
])
def test_a_bad_policy_is_refused_naming_the_key(policy, where, says):
    with pytest.raises(ValidationError) as caught:
        product(policy)
    (error,) = caught.value.errors()
    assert tuple(error["loc"]) == where and says in error["msg"]


def plan(kind, requested=None, reason=None, state=None):
    values = requested_values(kind, requested or {})
    return planned_event(kind, values, reason, state or at(S.placed), NOW)


def test_each_kind_becomes_its_lifecycle_event():
    start, end = NOW + timedelta(days=3), NOW + timedelta(days=3, hours=2)
    cancel = plan("cancel", reason="  moved away ")
    assert (cancel.type, cancel.data, cancel.occurred_at) == (EventType.order_cancelled,
                                                              {"reason": "moved away"}, NOW)
    assert plan("hold").type is EventType.order_on_hold and plan("hold").data["reason"]
    assert plan("release_hold").type is EventType.order_resumed
    early = plan("reschedule", {"appointment": "apheresis", "start": start, "end": end})
    assert early.type is EventType.apheresis_scheduled
    assert early.data == {"start": "2026-11-04T09:00:00Z", "end": "2026-11-04T11:00:00Z"}
    moved = plan("reschedule", {"appointment": "apheresis", "start": start}, "sick",
                 at(S.apheresis_scheduled))
    assert moved.type is EventType.apheresis_rescheduled and moved.data["reason"] == "sick"
    assert plan("change", {"start": start}, state=at(S.confirmed)).type is EventType.apheresis_scheduled
    assert plan("change", {"start": start}, state=at(S.collected)).type is EventType.infusion_scheduled
    infusion = plan("reschedule", {"appointment": "infusion", "start": start})
    assert infusion.type is EventType.infusion_scheduled
    given = NOW - timedelta(hours=2)
    infused = plan("infused", {"administered_at": given})
    assert (infused.type, infused.occurred_at, infused.data) == (
        EventType.product_infused, given, {"infused_at": "2026-11-01T07:00:00Z"})
    assert plan("order_number", {"site_order_number": "X-1"}) is None
    assert plan("reschedule", {"appointment_action": "cancelled"}) is None


@pytest.mark.parametrize(("kind", "requested", "pointer"), [
    ("order_number", {}, "/requested/site_order_number"),
    ("reschedule", {"appointment": "apheresis"}, "/requested/start"),
    ("infused", {}, "/requested/administered_at"),
    ("change", {"start": "2026-11-05T09:00:00Z", "end": "2026-11-05T08:00:00Z"}, "/requested/end"),
    ("change", {"start": "tomorrow"}, "/requested/start"),
    ("change", {"start": "2026-11-05T09:00:00"}, "/requested/start"),
    ("cancel", {"priority": "high"}, "/requested/priority"),
    ("reschedule", {"appointment": "surgery", "start": "2026-11-05T09:00:00Z"}, "/requested/appointment"),
    ("order_number", {"site_order_number": "N" * 65}, "/requested/site_order_number"),
])
def test_bad_requested_values_name_the_value(kind, requested, pointer):
    with pytest.raises(InvalidRequest) as caught:
        requested_values(kind, requested)
    assert caught.value.pointer == pointer


def test_requested_times_are_checked_for_plausibility():
    settings = load_settings()
    with pytest.raises(InvalidRequest) as far:
        check_times(settings, plan("change", {"start": NOW + timedelta(days=800)}), NOW)
    assert far.value.pointer == "/requested/start"
    with pytest.raises(InvalidRequest) as ahead:
        check_times(settings, plan("infused", {"administered_at": NOW + timedelta(hours=1)}), NOW)
    assert ahead.value.pointer == "/requested/administered_at"
    with pytest.raises(InvalidRequest) as old:
        check_times(settings, plan("change", {"start": datetime(1999, 1, 1, tzinfo=UTC)}), NOW)
    assert old.value.pointer == "/requested/start"
    check_times(settings, plan("change", {"start": NOW + timedelta(days=30)}), NOW)  # plausible
