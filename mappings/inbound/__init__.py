"""Inbound HL7v2: a site's order controls (ORC-1 CA/HD/RL/XO/NA), appointments (SIU^S12-S15) and
infusion done (RAS^O17, or ORU^R01 in 2.3) read into typed requests (``parse``), and the ACKs that
answer them (``ack``).  Pure: no I/O, no clock."""
