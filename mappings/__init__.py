"""Site mapping profiles and the pure translation (order + event + profile -> FHIR + HL7v2)."""
