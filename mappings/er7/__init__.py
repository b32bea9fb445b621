"""HL7v2 ER7 syntax that knows nothing of orders: escaping (``escape``), ACK parsing and
building (``ack``), segment-order checks (``structure``).  Pure."""
