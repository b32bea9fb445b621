"""A blank skip reason is a validation error naming /reason (422), not a conflict with stored data."""

from __future__ import annotations

from gateway.delivery.outbox import MessageState
from tests.conftest import ADMIN
from tests.integration.test_delivery_support import enqueue_mllp, messages


def test_a_blank_skip_reason_is_refused_as_invalid_and_changes_nothing(client, engine) -> None:
    enqueue_mllp(engine, ["M1"])
    message_id = messages(engine)[0].id
    response = client.post(f"/v1/admin/outbox/{message_id}/skip", headers=ADMIN, json={"reason": "  \t "})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation-failed"
    assert [e["pointer"] for e in body["errors"]] == ["/reason"]
    assert messages(engine)[0].state == MessageState.pending
