"""Guaranteed delivery: the outbox, its per-destination FIFO queues, the worker and its
leases, and the senders built from site profiles and manufacturer webhooks."""
