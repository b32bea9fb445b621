"""A loopback rest-hook receiver (a real HTTP server on an ephemeral port, in a thread) standing in
for an EHR, and helpers to subscribe."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from mappings.fhir.subscription import CONTENT_EXTENSION, HEARTBEAT_EXTENSION, topic_url

__all__ = ["Receiver", "subscription_body", "notification_type", "event_numbers", "validate_r4b"]


class Receiver:
    """Records every POSTed body (JSON) while ``up``; answers ``down_status`` while down."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.up = True
        self.down_status = 503
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    if not receiver.up:
                        receiver.refused += 1
                        status = receiver.down_status
                    else:
                        receiver.received.append(json.loads(body))
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ehr"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.received if notification_type(b) == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscription_body(
    endpoint: str,
    topic: str = "task-status",
    content: str = "id-only",
    heartbeat_s: int | None = None,
    filters: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": CONTENT_EXTENSION, "valueCode": content}]},
    }
    if heartbeat_s is not None:
        channel["extension"] = [{"url": HEARTBEAT_EXTENSION, "valueUnsignedInt": heartbeat_s}]
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "EHR inbox",
        "criteria": topic_url(topic),
        "channel": channel,
        **extra,
    }
    if filters:
        body["_criteria"] = {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                    "valueString": f,
                }
                for f in filters
            ]
        }
    return body


def _status(bundle: dict[str, Any]) -> dict[str, Any]:
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Parameters"
    return {p["name"]: p for p in first["parameter"] if p["name"] != "notification-event"} | {
        "events": [p for p in first["parameter"] if p["name"] == "notification-event"]
    }


def notification_type(bundle: dict[str, Any]) -> str:
    return str(_status(bundle)["type"]["valueCode"])


def event_numbers(bundle: dict[str, Any]) -> list[int]:
    return [
        int(next(part["valueString"] for part in e["part"] if part["name"] == "event-number"))
        for e in _status(bundle)["events"]
    ]


def validate_r4b(resource: dict[str, Any]) -> None:
    model = get_fhir_model_class(resource["resourceType"])
    again = model.model_validate(resource).model_dump(mode="json", by_alias=True, exclude_none=True)
    model.model_validate(again)
