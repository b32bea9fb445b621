"""HL7v2 rendering of our orders, per site profile: message choice (``event_map``), segments and
fields, results (``ORU^R01``), scheduling (``SIU``), per-field overrides, and ``render`` on top.

Pure.  The ER7 syntax under it (escaping, ACKs, segment order) is :mod:`mappings.er7`.  Import the
modules themselves (``from mappings.hl7v2.render import render_messages``): this package re-exports
nothing.
"""
