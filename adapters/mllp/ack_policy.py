"""What an ACK means for the message we sent: the MLLP sender's policy, as a pure function.

The safe default every trusted engine ships with:

* AA / CA  -> delivered (a CA is only a commit: with ``wait_for_application_ack`` the sender then
  waits for the application ACK and judges that one);
* AR / CR  -> retry the same message (same MSH-10), holding the queue;
* AE / CE  -> dead-letter, keeping the ACK text; the queue moves on;
* MSA-2 not our MSH-10, or an MSA-1 outside table 0008 -> never delivered: retry, with a warning
  (and the sender drops the connection, since the stream is out of step).
"""

from __future__ import annotations

from typing import Literal

from adapters.delivery_result import DeliveryOutcome
from mappings.er7.ack import Ack

__all__ = ["AckStage", "awaits_application_ack", "judge_ack"]

AckStage = Literal["first", "application"]


def judge_ack(sent_control_id: str, ack: Ack, *, stage: AckStage = "first") -> DeliveryOutcome:
    """The outcome of one exchange, from the ACK to the message whose MSH-10 was ``sent_control_id``.

    ``stage="application"`` judges the application ACK that follows a CA in enhanced mode, where a
    commit code is out of place.
    """
    if ack.control_id != sent_control_id:
        return DeliveryOutcome("retry", ack_code=ack.code, detail=ack.detail,
                               warning=f"ACK MSA-2 {ack.control_id!r} does not match the sent MSH-10 "
                                       f"{sent_control_id!r}; not counted as delivered")
    allowed = {"AA", "AE", "AR"} if stage == "application" else {"AA", "AE", "AR", "CA", "CE", "CR"}
    if ack.code not in allowed:
        return DeliveryOutcome("retry", ack_code=ack.code, detail=ack.detail,
                               warning=f"unexpected acknowledgment code {ack.code!r} in the {stage} ACK")
    if ack.code in ("AA", "CA"):
        warning = f"accepted with ERR: {ack.detail}" if ack.errors else None
        return DeliveryOutcome("delivered", ack_code=ack.code, detail=ack.detail, warning=warning)
    if ack.code in ("AR", "CR"):
        return DeliveryOutcome("retry", ack_code=ack.code, detail=ack.detail or f"rejected with {ack.code}")
    return DeliveryOutcome("dead", ack_code=ack.code, detail=ack.detail or f"error ACK {ack.code}")


def awaits_application_ack(ack: Ack, *, wait_for_application_ack: bool) -> bool:
    """True when a CA came and the site's profile asks us to wait for the application ACK too."""
    return wait_for_application_ack and ack.code == "CA"
