"""Site mapping profiles: the YAML schema (``schema``), its loader (``loader``) and the
``hl7v2`` and ``delivery`` sections."""
