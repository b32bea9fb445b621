"""``/metrics`` after known traffic (issue 15): HTTP requests by route *template*, intake counts by
outcome and latency, ONE delivery latency histogram (buckets from the recorded attempts), site-request
counts by kind and state; no id, MRN or name in any label."""

from __future__ import annotations

import asyncio
import re

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import OutboxMessage
from gateway.delivery.worker import DeliveryWorker
from tests.conftest import ACME, ADMIN, event_body, order_body
from tests.integration.site_request_support import iso, place, request_rows, send
from tests.integration.test_delivery_support import FAST, enqueue_mllp


def samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def label_values(text: str) -> set[str]:
    return set(re.findall(r'="([^"]*)"', text))


def test_http_and_intake_metrics_after_known_traffic(client, clock) -> None:
    place(client, clock, "ORD-77")  # 201
    assert client.post("/v1/orders", json=order_body("ORD-77"), headers=ACME).status_code == 200
    # refused: the event's CoI is not the order's
    bad = event_body("E-1", "order.confirmed", "2026-11-01T10:00:00Z", coi="CHA999923A1B2C4K")
    assert client.post("/v1/orders/ORD-77/events", json=bad, headers=ACME).status_code == 422
    good = event_body("E-2", "order.confirmed", iso(clock.advance(hours=1)))
    assert client.post("/v1/orders/ORD-77/events", json=good, headers=ACME).status_code == 201
    assert client.get("/v1/orders/ORD-77", headers=ACME).status_code == 200
    assert client.get("/v1/orders/NO-SUCH", headers=ACME).status_code == 404
    assert client.get("/no/such/MRN-0042").status_code == 404
    text = client.get("/metrics").text
    s = samples(text)
    get_order = ('cgt_http_request_duration_seconds_count'
                 '{method="GET",route="/v1/orders/{order_id}",status="%d"}')
    assert s[get_order % 200] == 1 and s[get_order % 404] == 1
    post_order = 'cgt_http_request_duration_seconds_count{method="POST",route="/v1/orders",status="%d"}'
    assert s[post_order % 201] == 1 and s[post_order % 200] == 1
    assert s['cgt_http_request_duration_seconds_count{method="GET",route="<unmatched>",status="404"}'] == 1
    assert s['cgt_intake_requests_total{code="",kind="order",outcome="accepted"}'] == 1
    assert s['cgt_intake_requests_total{code="",kind="order",outcome="replayed"}'] == 1
    assert s['cgt_intake_requests_total{code="coi-mismatch",kind="event",outcome="rejected"}'] == 1
    assert s['cgt_intake_requests_total{code="",kind="event",outcome="accepted"}'] == 1
    assert s['cgt_intake_duration_seconds_count{kind="event",outcome="rejected"}'] == 1
    assert s['cgt_intake_duration_seconds_sum{kind="order",outcome="accepted"}'] > 0
    labels = label_values(text)
    assert not {"ORD-77", "NO-SUCH", "MRN-0042", "E-1", "Zyxwvut", "/no/such/MRN-0042"} & labels
    assert not any("ORD-77" in v or "MRN" in v or "Zyxwvut" in v for v in labels)


def test_unknown_methods_and_codes_do_not_grow_labels(client) -> None:
    client.request("BREW", "/v1/orders", headers=ACME)
    text = client.get("/metrics").text
    assert "BREW" not in text
    assert 'method="OTHER"' in text


def test_one_delivery_histogram_with_buckets_from_recorded_attempts(client, engine) -> None:
    enqueue_mllp(engine, ["M1", "M2"])

    class Scripted:
        def __init__(self, *outcomes: DeliveryOutcome) -> None:
            self.outcomes = list(outcomes)

        async def send(self, message: OutboxMessage) -> DeliveryOutcome:
            return self.outcomes.pop(0)

    sender = Scripted(DeliveryOutcome("retry", detail="AR", latency_ms=4.0),
                      DeliveryOutcome("delivered", ack_code="AA", latency_ms=20.0),
                      DeliveryOutcome("delivered", ack_code="AA", latency_ms=300.0))
    worker = DeliveryWorker(engine, lambda d: sender, settings=FAST)
    for _ in range(3):
        asyncio.run(worker.deliver_head("site-a/mllp"))
        asyncio.run(asyncio.sleep(FAST.retry.max_delay_s))
    text = client.get("/metrics").text
    s = samples(text)
    delivered = 'destination="site-a/mllp",outcome="delivered"'
    bucket = 'cgt_delivery_latency_seconds_bucket{destination="site-a/mllp",le="%s",outcome="delivered"}'
    assert s[bucket % "0.01"] == 0
    assert s[bucket % "0.025"] == 1
    assert s[bucket % "0.25"] == 1
    assert s[bucket % "0.5"] == 2
    assert s[bucket % "+Inf"] == 2
    assert s[f"cgt_delivery_latency_seconds_count{{{delivered}}}"] == 2
    assert abs(s[f"cgt_delivery_latency_seconds_sum{{{delivered}}}"] - 0.32) < 1e-9
    assert s['cgt_delivery_latency_seconds_count{destination="site-a/mllp",outcome="retry"}'] == 1
    # exactly one delivery latency metric: the summary of old is gone
    families = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    latency = {name for name, _ in families if "delivery" in name and "latency" in name}
    assert latency == {"cgt_delivery_latency_seconds"}
    assert ("cgt_delivery_latency_seconds", "histogram") in families


def test_site_request_counts_by_kind_and_state(client, clock, engine) -> None:
    place(client, clock, "ORD-1")
    send(client, "hold", dedupe_key="EPIC|SITEA|1")
    send(client, "cancel", dedupe_key="EPIC|SITEA|2")
    rows = request_rows(engine)
    assert len(rows) == 2
    s = samples(client.get("/metrics", headers=ADMIN).text)
    for row in rows:
        assert s[f'cgt_site_requests{{kind="{row.kind}",state="{row.state}"}}'] == 1
    assert sum(v for k, v in s.items() if k.startswith("cgt_site_requests{")) == 2
