"""HL7v2: rendering per site profile (``render``), escaping, segment builders, ACK primitives (``ack``).

Import the modules themselves (``from adapters.hl7v2.render import render_messages``); this package
re-exports nothing, so that ``mappings.profile_hl7v2`` can import ``adapters.hl7v2.templates``
without a cycle.
"""
