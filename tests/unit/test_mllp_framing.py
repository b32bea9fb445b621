"""MLLP codec: framing and the incremental reader, on every split and merge we could think of."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mllp.framing import FrameReader, FramingError, MessageTooLarge, frame

MSG1 = b"MSH|^~\\&|GW|CGT|EHR|SITE|20261121||ORM^O01|C1|P|2.3\rPID|1||MRN1\r"
MSG2 = b"MSH|^~\\&|GW|CGT|EHR|SITE|20261121||ORM^O01|C2|P|2.3\rPID|1||MRN2\r"


def test_frame_wraps_in_start_and_end_blocks() -> None:
    assert frame(b"abc") == b"\x0babc\x1c\x0d"
    assert frame(b"") == b"\x0b\x1c\x0d"


@pytest.mark.parametrize("payload", [b"a\x0bb", b"a\x1cb", b"\x1c\x0d"])
def test_frame_refuses_block_characters_in_the_payload(payload: bytes) -> None:
    with pytest.raises(FramingError):
        frame(payload)


def test_two_frames_in_one_read() -> None:
    reader = FrameReader()
    reader.feed(frame(MSG1) + frame(MSG2))
    assert reader.messages() == [MSG1, MSG2]
    assert reader.idle


def test_one_frame_split_across_three_reads_with_split_end_block() -> None:
    data = frame(MSG1)
    reader = FrameReader()
    reader.feed(data[:10])
    assert reader.next_message() is None
    reader.feed(data[10:-1])  # ends with 0x1C, the 0x0D still to come
    assert reader.next_message() is None
    reader.feed(data[-1:])
    assert reader.next_message() == MSG1
    assert reader.next_message() is None


def test_split_start_block_byte_by_byte() -> None:
    reader = FrameReader()
    out: list[bytes] = []
    for byte in frame(MSG1) + frame(MSG2):
        reader.feed(bytes([byte]))
        out.extend(reader.messages())
    assert out == [MSG1, MSG2]


def test_garbage_before_start_block_is_dropped_and_counted() -> None:
    reader = FrameReader()
    reader.feed(b"\r\nGET / HTTP/1.1\r\n" + frame(MSG1) + b"junk" + frame(MSG2))
    assert reader.messages() == [MSG1, MSG2]
    assert reader.discarded_bytes == len(b"\r\nGET / HTTP/1.1\r\n") + 4


def test_zero_length_message_is_returned_as_empty() -> None:
    reader = FrameReader()
    reader.feed(frame(b"") + frame(MSG1))
    assert reader.messages() == [b"", MSG1]


def test_start_block_inside_unfinished_message_drops_the_unfinished_one() -> None:
    reader = FrameReader()
    reader.feed(b"\x0bMSH|truncated" + frame(MSG1))
    assert reader.messages() == [MSG1]
    assert reader.discarded_bytes == len(b"MSH|truncated")


def test_many_stray_start_blocks_do_not_recurse() -> None:
    reader = FrameReader()
    reader.feed(b"\x0b" * 50_000 + frame(MSG1))
    assert reader.messages() == [MSG1]


def test_end_block_without_carriage_return_is_a_framing_error_and_the_reader_recovers() -> None:
    reader = FrameReader()
    reader.feed(b"\x0bbad\x1cX" + frame(MSG1))
    with pytest.raises(FramingError, match="0x0D"):
        reader.next_message()
    assert reader.next_message() == MSG1


def test_oversized_complete_message_is_refused_and_next_one_read() -> None:
    reader = FrameReader(max_message_size=10)
    reader.feed(frame(b"x" * 11) + frame(b"ok"))
    with pytest.raises(MessageTooLarge):
        reader.next_message()
    assert reader.next_message() == b"ok"


def test_oversized_message_arriving_in_pieces_keeps_memory_bounded() -> None:
    reader = FrameReader(max_message_size=100)
    reader.feed(b"\x0b" + b"x" * 60)
    assert reader.next_message() is None
    reader.feed(b"x" * 60)
    with pytest.raises(MessageTooLarge):
        reader.next_message()
    for _ in range(100):  # the sender keeps going: nothing accumulates
        reader.feed(b"y" * 1000)
        assert reader.next_message() is None
        assert reader.buffered <= 1
    reader.feed(b"yy\x1c")
    assert reader.next_message() is None
    reader.feed(b"\x0d" + frame(b"next"))
    assert reader.next_message() == b"next"


def test_message_of_exactly_the_maximum_size_is_accepted() -> None:
    reader = FrameReader(max_message_size=10)
    data = frame(b"x" * 10)
    reader.feed(data[:-1])
    assert reader.next_message() is None
    reader.feed(data[-1:])
    assert reader.next_message() == b"x" * 10


def test_invalid_max_size() -> None:
    with pytest.raises(ValueError):
        FrameReader(max_message_size=0)


_payload = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(_payload, max_size=6), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_messages_cut_anywhere_decode_to_the_same_messages(messages: list[bytes],
                                                               cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = FrameReader()
    out: list[bytes] = []
    for start, stop in zip(points, points[1:], strict=False):
        reader.feed(stream[start:stop])
        out.extend(reader.messages())
    assert out == messages
    assert reader.idle


def test_oversized_message_keeps_its_first_bytes_for_the_answer_and_says_when_it_is_skipped() -> None:
    reader = FrameReader(max_message_size=100)
    reader.feed(b"junk\x0bMSH|^~\\&|A" + b"x" * 5000)
    with pytest.raises(MessageTooLarge) as caught:
        reader.next_message()
    assert caught.value.prefix.startswith(b"MSH|^~\\&|A")  # after the start block, without the junk
    assert len(caught.value.prefix) == MessageTooLarge.PREFIX_KEPT
    assert reader.skipping
    reader.feed(b"y\x1c\x0d")
    assert reader.next_message() is None
    assert not reader.skipping


def test_oversized_complete_message_keeps_only_its_own_bytes_as_prefix() -> None:
    reader = FrameReader(max_message_size=10)
    reader.feed(frame(b"MSH|" + b"z" * 20) + frame(b"ok"))
    with pytest.raises(MessageTooLarge) as caught:
        reader.next_message()
    assert caught.value.prefix == b"MSH|" + b"z" * 20
    assert not reader.skipping
    assert reader.next_message() == b"ok"
