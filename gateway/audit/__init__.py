"""The tamper-evident audit trail (issue 14, item 6): who read or wrote which patient's data.

One record per API call that reads or writes patient data, hash-chained (``docs/audit.md``):

* writes append in the caller's transaction, LAST (after the caller's own row locks):
  ``append(session_or_connection, [AuditEntry.of(actor, at_us, "create", "orders.create", ...)])``;
* reads go through the serving process's write-behind batch: ``trail.note_read(actor, operation, ...)``
  (:class:`AuditTrail`, ``app.state.audit``), appended at most ``audit_read_flush_s`` later;
* ``verify_chain`` (``cgt-gateway audit verify``), ``audit_event`` (FHIR AuditEvent, IHE BALP shape),
  ``search_records`` / ``records_since`` (``GET /fhir/AuditEvent``, ``cgt-gateway audit export``).

Layer: below ``delivery`` (intake and the delivery worker call it), above ``store``.
"""

from gateway.audit.chain import append, read_head
from gateway.audit.records import SYSTEM_ACTOR, Actor, AuditEntry
from gateway.audit.trail import AuditTrail

__all__ = ["Actor", "AuditEntry", "AuditTrail", "SYSTEM_ACTOR", "append", "read_head"]
