"""Issue 11, part 1: no FHIR resource id is shared between tenants; which events claim what.

The autologous journey (a DIN, two lots) is translated for several orders that share every
business identifier they can: the same DIN, the same lot numbers, the same patient MRN and the same
ordering NPI.  Orders of different tenants (site x manufacturer) must produce disjoint resource
ids; two orders of one tenant share only their parties (Patient, Practitioner, Organizations).
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import pytest

from gateway.cli.goldens import FIXTURES, GOLDEN_NOW, load_case
from gateway.config import ProductConfig, Settings, load_settings
from gateway.intake.identity_claims import Claim, claims_of
from gateway.intake.replay import replay_journey
from mappings.events import EventIn
from mappings.ids import ISBT128_DIN_SYSTEM, lot_system
from mappings.orders import OrderIn
from mappings.profile.loader import load_profile
from mappings.profile.schema import SiteProfile
from mappings.translate import translate
from terminology import load_terminology
from tests.unit.test_translate import DEMO_CONFIG

PARTIES = frozenset({"Patient", "Practitioner", "Organization"})
NOVA_COI = "NC-000123"


@cache
def _settings() -> Settings:
    return load_settings(DEMO_CONFIG)


@cache
def _profile(site: str) -> SiteProfile:
    return load_profile(FIXTURES / "profiles" / f"{site}.yaml")


@cache
def _ids(order_id: str, site_id: str, manufacturer: str) -> frozenset[tuple[str, str]]:
    """Every (type, id) the journey writes for this order."""
    case = load_case(FIXTURES / "events" / "journey-autologous.json")
    coi, product = (case.order.coi, "CART-CD19") if manufacturer == "acme-bio" else (NOVA_COI, "GT-HEM-01")
    order = OrderIn.model_validate({**case.order.model_dump(mode="json"), "order_id": order_id,
                                    "site_id": site_id, "coi": coi, "product_code": product})
    events = [EventIn.model_validate({**e.model_dump(mode="json"), "coi": coi}) for e in case.events]
    found: set[tuple[str, str]] = set()
    dins: set[str] = set()
    for step in replay_journey(_settings(), order, events, placed_at=case.placed_at):
        if step.snapshot is None or step.record is None:  # refused: stores nothing
            continue
        translation = translate(step.snapshot, step.record, _profile(site_id), load_terminology(), GOLDEN_NOW)
        for resource in translation.resources:
            found.add((resource["resourceType"], resource["id"]))
            dins.update(i["value"] for i in resource.get("identifier", [])
                        if i["system"] == ISBT128_DIN_SYSTEM)
    assert dins, "the journey records a DIN"
    return frozenset(found)


TENANTS = [("ORD-A", "site-a", "acme-bio"), ("ORD-B", "site-b", "acme-bio"), ("ORD-N", "site-a", "nova-cell"),
           ("ORD-M", "site-b", "nova-cell")]


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(TENANTS, 2)),
                         ids=lambda t: f"{t[1]}/{t[2]}")
def test_orders_of_different_tenants_share_no_resource_id(first: tuple[str, str, str],
                                                         second: tuple[str, str, str]) -> None:
    a, b = _ids(*first), _ids(*second)
    assert {t for t, _ in a} >= {"BiologicallyDerivedProduct", "Task", "Observation", "Patient"}
    assert not a & b


def test_two_orders_of_one_tenant_share_only_their_parties() -> None:
    """Same site and manufacturer, same DIN and lots (refused by intake since; the translation must
    not merge them either): the products are two, the parties one."""
    a, b = _ids("ORD-A", "site-a", "acme-bio"), _ids("ORD-A2", "site-a", "acme-bio")
    shared = a & b
    assert shared and {t for t, _ in shared} <= PARTIES
    products = [{i for t, i in ids if t == "BiologicallyDerivedProduct"} for ids in (a, b)]
    assert len(products[0]) == 3 and not products[0] & products[1]  # starting material and two lots


def test_products_keep_the_din_and_lot_as_identifiers() -> None:
    case = load_case(FIXTURES / "events" / "journey-autologous.json")
    steps = replay_journey(_settings(), case.order, case.events, placed_at=case.placed_at)
    last = [s for s in steps if s.snapshot is not None and s.record is not None][-1]
    assert last.snapshot is not None and last.record is not None
    translation = translate(last.snapshot, last.record, _profile("site-a"), load_terminology(), GOLDEN_NOW)
    systems = {i["system"] for r in translation.resources if r["resourceType"] == "BiologicallyDerivedProduct"
               for i in r["identifier"]}
    assert {ISBT128_DIN_SYSTEM, lot_system("acme-bio")} <= systems


# --------------------------------------------------------------------------- what an event claims

def _product(autologous: bool) -> ProductConfig:
    return ProductConfig(code="P", name="P", autologous=autologous, coi_format="isbt128", shelf_life_days=10)


@pytest.mark.parametrize(("event_type", "data", "expected"), [
    ("collection.completed", {"collected_at": "x", "din": "A9999211234563"},
     [Claim("din", "", "A9999211234563")]),
    ("collection.completed", {"collected_at": "x"}, []),
    ("manufacturing.started", {"lot": "L-1"}, [Claim("lot", "acme-bio", "L-1")]),
    ("manufacturing.started", {}, []),
    ("manufacturing.completed", {"lot": "L-1", "expires_at": "x"}, [Claim("lot", "acme-bio", "L-1")]),
    ("order.confirmed", {"slot_id": "S"}, []),
    ("custody.transferred", {"din": "A9999211234563"}, []),  # only a collection records a DIN
])
def test_claims_of_an_autologous_product(event_type: str, data: dict[str, Any],
                                         expected: list[Claim]) -> None:
    assert list(claims_of(_product(True), "acme-bio", event_type, data)) == expected


def test_an_allogeneic_lot_is_not_claimed_but_its_din_is() -> None:
    product = _product(False)
    assert claims_of(product, "m", "manufacturing.started", {"lot": "L-1"}) == ()
    assert claims_of(product, "m", "collection.completed", {"din": "A9999211234563"}) == (
        Claim("din", "", "A9999211234563"),)


def test_a_long_lot_is_keyed_by_its_digest() -> None:
    claim = Claim("lot", "m", "é" * 1000)  # 2000 bytes: too long for a PostgreSQL btree key as text
    assert len(claim.value_sha256) == 64 and claim.pointer == "/data/lot"
