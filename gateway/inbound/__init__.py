"""Site requests in: what treatment sites send back (HL7v2 over MLLP, FHIR Task/Procedure), stored as
site requests, decided by the product's policy or its manufacturer, and answered through the outbox.

``requests``: the one entry both channels use (:func:`gateway.inbound.requests.receive`).
"""
