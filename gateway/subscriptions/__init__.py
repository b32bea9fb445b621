"""FHIR Subscriptions (R5 Backport IG, R4 flavour), delivered through the outbox: the routes, the
store of subscriptions and events, the trigger (a hook on stored FHIR versions), notifications and
the heartbeat scheduler.  See ``docs/subscriptions.md``."""
