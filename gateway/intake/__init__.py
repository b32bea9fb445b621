"""Order and event intake: the lifecycle state machine, the Chain of Identity, the order's
history, and what happens to an accepted event in its transaction (``pipeline``)."""
