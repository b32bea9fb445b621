"""The ``cgt-gateway`` command (``main``) and its ``outbox`` and ``profile`` groups; ``goldens``
regenerates the golden files (``make goldens``)."""
