"""MLLP framing: ``0x0B`` + message + ``0x1C 0x0D``.  A pure codec, no sockets.

:func:`frame` wraps one message.  :class:`FrameReader` is the incremental decoder for a byte
stream: feed it whatever the socket gave, then take complete messages with
:meth:`FrameReader.next_message` until it returns ``None``.  It copes with a message split over
many reads (including a start or end block split in two), several messages in one read, bytes
before a start block (counted and dropped), zero-length messages (returned as ``b""``: the caller
decides), a start block inside an unfinished message (the unfinished one is dropped), and a
maximum message size (:class:`MessageTooLarge`, carrying the message's first bytes so a listener can
still answer it; the rest of that message is then skipped, so the buffer stays bounded and the
stream recovers at the next message: :attr:`FrameReader.skipping` says when it is past it).
"""

from __future__ import annotations

__all__ = [
    "CARRIAGE_RETURN",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "END_BLOCK",
    "START_BLOCK",
    "FrameReader",
    "FramingError",
    "MessageTooLarge",
    "frame",
]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
_TRAILER = END_BLOCK + CARRIAGE_RETURN
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


class FramingError(ValueError):
    """The byte stream breaks MLLP framing."""


class MessageTooLarge(FramingError):
    """A message grew past the reader's ``max_message_size``.  ``prefix`` holds its first bytes (up to
    ``PREFIX_KEPT``, enough for the MSH segment an AR answer needs)."""

    PREFIX_KEPT = 1024

    def __init__(self, detail: str, prefix: bytes = b"") -> None:
        super().__init__(detail)
        self.prefix = prefix[:self.PREFIX_KEPT]


def frame(message: bytes) -> bytes:
    """``0x0B`` + ``message`` + ``0x1C 0x0D``.  A payload holding either block byte is refused:
    it would end the frame early (HL7 escapes such characters as ``\\X0B\\``/``\\X1C\\``)."""
    if START_BLOCK in message or END_BLOCK in message:
        raise FramingError("message contains an MLLP block character (0x0B or 0x1C)")
    return START_BLOCK + message + _TRAILER


class FrameReader:
    """Incremental MLLP decoder.  Not thread-safe; one per connection."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._in_frame = False  # the buffer starts just after a start block
        self._scanned = 0  # bytes of the current frame already searched for an end block
        self._skipping = False  # dropping the rest of an oversized message
        self.discarded_bytes = 0  # garbage outside frames, dropped unfinished or oversized frames

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished message."""
        return len(self._buffer)

    @property
    def idle(self) -> bool:
        """True when nothing is buffered (no partial message, no unread complete message)."""
        return not self._buffer and not self._in_frame and not self._skipping

    @property
    def skipping(self) -> bool:
        """True while the rest of an oversized message is being dropped."""
        return self._skipping

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> bytes | None:
        """The next complete message (without its framing), or ``None`` until more data is fed.

        Raises :class:`MessageTooLarge` once per oversized message, and :class:`FramingError` for an
        end block not followed by a carriage return (the offending bytes are dropped first, so the
        reader can go on).
        """
        while True:
            if self._skipping and not self._skip_oversized():
                return None
            if not self._in_frame and not self._find_start():
                return None
            message = self._take_frame()
            if message is not None:
                return message
            if self._in_frame:  # no end block yet: is it getting too big?
                if len(self._buffer) > self.max_message_size + 1:
                    prefix = bytes(self._buffer[:MessageTooLarge.PREFIX_KEPT])
                    self._drop(len(self._buffer))
                    self._in_frame = False
                    self._skipping = True
                    raise MessageTooLarge(f"MLLP message exceeds {self.max_message_size} bytes", prefix)
                return None

    def messages(self) -> list[bytes]:
        """Every complete message available now.  Raises as :meth:`next_message` does, and the messages
        taken before the error are then lost: use :meth:`next_message` where that matters."""
        found: list[bytes] = []
        while (message := self.next_message()) is not None:
            found.append(message)
        return found

    def _drop(self, n: int) -> None:
        self.discarded_bytes += n
        del self._buffer[:n]

    def _find_start(self) -> bool:
        start = self._buffer.find(START_BLOCK)
        if start == -1:
            self._drop(len(self._buffer))
            return False
        self._drop(start)
        del self._buffer[:1]
        self._in_frame = True
        self._scanned = 0
        return True

    def _take_frame(self) -> bytes | None:
        """Complete message at the head of the buffer, if there is one; handles stray blocks."""
        buffer = self._buffer
        while True:
            search_from = max(self._scanned - 1, 0)  # an end block may have been the last byte seen
            end = buffer.find(END_BLOCK, search_from)
            restart = buffer.find(START_BLOCK, search_from, end if end != -1 else len(buffer))
            if restart == -1:
                break
            # a new start block before this message ended: drop the unfinished one
            self._drop(restart)
            del buffer[:1]
            self._scanned = 0
        if end == -1:
            self._scanned = len(buffer)
            return None
        if end + 1 == len(buffer):  # end block split from its carriage return
            self._scanned = end
            return None
        if buffer[end + 1:end + 2] != CARRIAGE_RETURN:
            self._drop(end + 1)
            self._in_frame = False
            raise FramingError("MLLP end block 0x1C not followed by 0x0D")
        if end > self.max_message_size:
            prefix = bytes(buffer[:min(end, MessageTooLarge.PREFIX_KEPT)])
            self._drop(end + 2)
            self._in_frame = False
            raise MessageTooLarge(f"MLLP message exceeds {self.max_message_size} bytes", prefix)
        message = bytes(buffer[:end])
        del buffer[:end + 2]
        self._in_frame = False
        self._scanned = 0
        return message

    def _skip_oversized(self) -> bool:
        """Drop bytes up to the end of the oversized message; True once past it."""
        end = self._buffer.find(_TRAILER)
        if end == -1:
            keep = 1 if self._buffer[-1:] == END_BLOCK else 0
            self._drop(len(self._buffer) - keep)
            return False
        self._drop(end + 2)
        self._skipping = False
        return True
