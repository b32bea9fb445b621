"""The service: REST and FHIR APIs, intake, the store, guaranteed delivery, the command line.

Subpackages by responsibility, top to bottom (``lint-imports`` holds the order; see
``docs/architecture.md``): ``cli`` > ``bootstrap`` (the app factory) > ``api`` > ``fhir_api`` >
``auth``, ``metrics`` > ``intake`` > ``delivery`` > ``store`` > ``context`` > ``config``, ``errors``,
``logging_config``.
"""
