"""HL7v2: rendering per site profile (``render``), escaping, segment builders, ACK primitives (``ack``).

Import the modules themselves (``from mappings.hl7v2.render import render_messages``); this package
re-exports nothing, so that ``mappings.profile.hl7v2`` can import ``mappings.profile.templates``
without a cycle.
"""
