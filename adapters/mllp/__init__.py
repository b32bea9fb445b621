"""MLLP: framing (no sockets), the client that sends one framed message and reads its ACK, ACK policy, and
the listener (``server``) that receives sites' messages and answers each with its handler's ACK."""
