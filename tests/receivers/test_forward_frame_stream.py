"""FrameStream.release(): a connection waiting for its ack holds no copy of the frame it sent."""

from __future__ import annotations

import gc
import tracemalloc

import msgpack

from collector.receivers.forward.protocol import FrameStream

MAX_FRAME = 8 << 20


def frame(chunk: str, entries: int = 1) -> bytes:
    records = [[1_733_400_000 + i, {"log": "x" * 1000, "i": i}] for i in range(entries)]
    packed: bytes = msgpack.packb(["app", records, {"chunk": chunk}], use_bin_type=True)
    return packed


def test_release_frees_the_last_frames_bytes() -> None:
    big = frame("big", entries=2000)  # about 2 MB
    gc.collect()
    tracemalloc.start()
    try:
        stream = FrameStream(MAX_FRAME)
        stream.feed(big)
        got = stream.next_frame()
        assert got is not None and got[1] == len(big)
        del got
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
        stream.release()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The copy for exact_frame and the unpacker's buffer: at least the frame's size twice.
    assert held - after > 2 * len(big) * 0.9, (held, after, len(big))


def test_frames_after_a_release_decode_as_before() -> None:
    stream = FrameStream(MAX_FRAME)
    first, second = frame("c1", 3), frame("c2", 2)
    stream.feed(first)
    got = stream.next_frame()
    assert got is not None and got[0][2]["chunk"] == "c1"
    stream.release()
    assert stream.next_frame() is None and not stream.partial()
    # The next frame arrives in two reads after the release.
    stream.feed(second[:10])
    assert stream.next_frame() is None and stream.partial()
    stream.feed(second[10:])
    got = stream.next_frame()
    assert got is not None and got[0][2]["chunk"] == "c2" and got[1] == len(second)
    assert stream.exact_frame()[2]["chunk"] == "c2"


def test_release_keeps_bytes_of_a_frame_that_follows() -> None:
    # A client may pipeline: the next frame's first bytes are already buffered when the first
    # frame is handed on; release() must not drop them.
    stream = FrameStream(MAX_FRAME)
    first, second = frame("c1"), frame("c2")
    stream.feed(first + second[:7])
    got = stream.next_frame()
    assert got is not None and got[0][2]["chunk"] == "c1"
    stream.release()
    assert stream.partial()
    stream.feed(second[7:])
    got = stream.next_frame()
    assert got is not None and got[0][2]["chunk"] == "c2"
    assert stream.exact_frame()[2]["chunk"] == "c2"


def test_an_invalid_utf8_chunk_is_echoed_exactly_after_a_release() -> None:
    # exact_frame() reads the kept bytes: after a release they must be the new frame's.
    stream = FrameStream(MAX_FRAME)
    stream.feed(frame("c1"))
    assert stream.next_frame() is not None
    stream.release()
    odd = msgpack.packb(["app", [[1, {"a": 1}]], {"chunk": "OPEN"}], use_bin_type=True).replace(
        b"OPEN", b"\xffPEN"
    )
    stream.feed(odd)
    got = stream.next_frame()
    assert got is not None and got[0][2]["chunk"] == "\ufffdPEN"
    assert stream.exact_frame()[2]["chunk"].encode("utf-8", "surrogateescape") == b"\xffPEN"
