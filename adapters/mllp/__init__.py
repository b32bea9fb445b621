"""MLLP: framing (no sockets), the client that sends one framed message and reads its ACK, ACK policy."""
