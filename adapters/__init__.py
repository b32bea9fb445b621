"""Transports: I/O only, no knowledge of orders.

``mllp`` (framing, the MLLP client, the ACK policy), ``http`` (FHIR push, signed webhooks, OAuth2
client credentials), ``retry`` (backoff) and ``delivery_result`` (what a send returns).  From the
pure core they import only ER7 syntax (:mod:`mappings.er7`); ``lint-imports`` holds it.
"""
