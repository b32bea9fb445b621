"""Milestone alerts and site certification per product (issue 16; ``docs/alerts.md``).

``tables`` (rows), ``store`` (raise/resolve/acknowledge in the caller's transaction, webhook and FHIR
Flag), ``evaluate`` (one order, one certification, all of them), ``certification`` (what holds, the
intake check), ``scheduler`` (the loop inside ``serve`` and ``worker``).  The pure rules are
:mod:`mappings.milestones`; the HTTP routes :mod:`gateway.api.alerts`.
"""
