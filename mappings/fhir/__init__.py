"""FHIR R4 resource builders: plain inputs in, validated FHIR JSON dicts out (``fhir.resources.R4B``).

Builders only shape resources; deciding *what* an event means is ``mappings.translate``'s job.
Every builder passes its result through the R4B model (:func:`mappings.fhir.model.validated`).
"""
