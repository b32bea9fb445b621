"""The pure translation: order + event + site profile + terminology + now -> FHIR resources, HL7v2
messages and mapping issues.  No I/O, no clock, no imports from ``gateway`` or the transports.

``domain`` (types), ``profile`` (site profiles), ``fhir`` (builders, compiled validation),
``hl7v2`` (rendering), ``er7`` (HL7v2 syntax, ACKs), ``translate`` (+ ``translate_journey``,
``translate_products``), ``preview``.
"""
