"""Site requests in: what treatment sites send back (HL7v2 over MLLP, FHIR Task/Procedure), stored as
site requests, decided by the product's policy or its manufacturer, and answered through the outbox.

``requests``: the one entry both channels use (:func:`gateway.inbound.requests.receive`) and the
manufacturer's decision (:func:`gateway.inbound.requests.decide_request`); ``policy``: the product's
``site_requests`` rules; ``site_events``: the requested values and the lifecycle event of each kind;
``records``: the ``site_request`` rows; ``answers``: the site's answer and the manufacturer's webhook.
See ``docs/site-requests.md``.
"""
