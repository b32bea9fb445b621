"""What ``docs/deploy.md`` ("Clocks: what needs them synchronized") says about hosts whose clocks differ,
each shown on a real database with two clocks: a lease is taken over by a host more than half a lease
ahead; ``meta.lastUpdated`` stays monotonic when a host is behind; an alert raised by a host ahead is
left open by a host behind (it never resolves an alert raised after its own clock); an access token
ends early on a host ahead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.config import Settings
from gateway.delivery.lease import LeaseBook
from gateway.delivery.settings import WorkerSettings
from gateway.oauth.clients import Client
from gateway.oauth.tables import OAuthClientRow
from gateway.oauth.tokens import issue_access_token, resolve_access_token
from gateway.store.fhir import _next_stamp
from tests.conftest import ACME, FakeClock
from tests.integration.test_alerts import JOURNEY, Gateway, _at, by_kind, play

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_the_documented_defaults() -> None:
    """The numbers the document quotes are the code's defaults."""
    settings = Settings()
    assert WorkerSettings().lease_seconds == 30
    assert settings.oauth_clock_skew_s == 60 and settings.oauth_access_token_lifetime_s == 300
    assert settings.oauth_jti_retention_s == 3600 and settings.alerts_interval_s == 60
    assert settings.max_future_skew_s == 300 and settings.audit_head_log_s == 300
    assert settings.database_pool_size == 10 and settings.database_max_overflow == 20


@pytest.mark.parametrize(("skew_s", "taken_over"), [(14, False), (16, True)])
def test_a_host_more_than_half_a_lease_ahead_takes_a_held_destination(engine: sa.Engine, skew_s: int,
                                                                      taken_over: bool) -> None:
    holder, other = LeaseBook("host-1", 30), LeaseBook("host-2", 30)
    with engine.connect() as conn:
        assert holder.hold(conn, "site-a/mllp", T0)
        conn.commit()
        last_unrenewed = T0 + timedelta(seconds=15)  # the holder uses it without renewing until here
        assert holder.fresh("site-a/mllp", last_unrenewed)
        took = other.hold(conn, "site-a/mllp", last_unrenewed + timedelta(seconds=skew_s))
        conn.commit()
    assert took is taken_over  # with 16 s of skew both believe they hold site-a/mllp


def test_last_updated_stays_monotonic_when_a_host_is_behind(engine: sa.Engine) -> None:
    ahead_us = int((T0 + timedelta(minutes=5)).timestamp() * 1_000_000)
    behind_us = int(T0.timestamp() * 1_000_000)
    with engine.begin() as conn:
        first = _next_stamp(conn, ahead_us)  # a host 5 minutes ahead writes
    with engine.begin() as conn:
        second = _next_stamp(conn, behind_us)  # then one on time
    assert first == ahead_us and second == ahead_us + 1  # later commit, later stamp: ahead of real time


@pytest.fixture
def two_hosts(settings: Settings, engine: sa.Engine) -> Iterator[tuple[Gateway, Gateway]]:
    ahead = Gateway(settings, engine, FakeClock(_at(JOURNEY["placed_at"])))
    behind = Gateway(settings, engine, FakeClock(_at(JOURNEY["placed_at"])))
    response = ahead.http.post("/v1/orders", json=JOURNEY["order"], headers=ACME)
    assert response.status_code == 201, response.text
    yield ahead, behind
    ahead.close()
    behind.close()


def test_an_alert_raised_by_a_host_ahead_is_not_resolved_by_one_behind(
    two_hosts: tuple[Gateway, Gateway],
) -> None:
    ahead, behind = two_hosts
    play(ahead, "evt-001", "evt-002", "evt-003", "evt-004", "evt-005")  # collected 17:10Z, then in transit
    ahead.clock.set(_at("2026-03-14T17:20:00Z"))  # 48 h 10 min after collection: overdue by this clock
    behind.clock.set(_at("2026-03-14T17:00:00Z"))  # 20 minutes behind: not yet overdue by this one
    assert len(ahead.scheduler.tick().changed) == 1  # raised
    assert behind.scheduler.tick().changed == []  # not overdue by its clock, but raised after it: left open
    [alert] = by_kind(behind.alerts(), "shipment-overdue")
    assert alert["state"] == "open" and alert["resolved_at"] is None
    ahead.clock.advance(minutes=5)
    behind.clock.advance(minutes=25)  # both clocks now past the deadline
    assert ahead.scheduler.tick().changed == [] and behind.scheduler.tick().changed == []
    [alert] = by_kind(ahead.alerts(), "shipment-overdue")
    assert alert["state"] == "open"  # the material is still overdue, and the alert says so


def test_a_host_behind_resolves_a_cleared_alert_once_its_clock_passes_the_raise_time(
    two_hosts: tuple[Gateway, Gateway],
) -> None:
    ahead, behind = two_hosts
    play(ahead, "evt-001", "evt-002", "evt-003", "evt-004", "evt-005")
    ahead.clock.set(_at("2026-03-14T17:20:00Z"))
    behind.clock.set(_at("2026-03-14T17:00:00Z"))
    assert len(ahead.scheduler.tick().changed) == 1  # raised at 17:20 by the host ahead
    play(behind, "evt-006")  # received at manufacturing, accepted by the host behind (its clock at 17:00)
    [alert] = by_kind(behind.alerts(), "shipment-overdue")
    assert alert["state"] == "open"  # not resolved by a clock earlier than its raise time
    behind.clock.set(_at("2026-03-14T17:21:00Z"))  # its clock passes the raise time
    assert len(behind.scheduler.tick().changed) == 1  # now the cleared condition resolves it
    [alert] = by_kind(ahead.alerts(), "shipment-overdue")
    assert alert["state"] == "resolved" and alert["resolved_at"] == "2026-03-14T17:21:00Z"
    assert behind.scheduler.tick().changed == [] and ahead.scheduler.tick().changed == []


def test_an_access_token_ends_early_on_a_host_ahead(engine: sa.Engine, settings: Settings) -> None:
    client = Client(client_id="deploy-doc", role="manufacturer:acme-bio", scopes=("orders.read",),
                    atoms=frozenset({"orders.read"}), keys=(), source="registered")
    token, lifetime = issue_access_token(engine, settings, client, ["orders.read"], T0)
    assert lifetime == 300
    with engine.begin() as conn:  # the client as registered, so the token resolves
        conn.execute(sa.insert(OAuthClientRow.__table__).values(  # type: ignore[attr-defined]
            client_id="deploy-doc", role="manufacturer:acme-bio", scopes="orders.read", jwks="{}",
            created_at=T0))
    on_time = T0 + timedelta(seconds=200)
    assert resolve_access_token(engine, settings, token, on_time) is not None
    ahead = on_time + timedelta(seconds=120)  # a host 2 minutes ahead: past the issuer's 300 s
    assert resolve_access_token(engine, settings, token, ahead) is None
