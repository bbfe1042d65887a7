"""The forward receiver against real clients and hand-built frames: every mode, acks, limits, errors."""

from __future__ import annotations

import asyncio
import gzip
import socket
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from fluent import sender

from collector.config import ConfigError, parse_config
from collector.core.model import LogRecord
from collector.core.service import Service
from tests.forward_frames import (
    ForwardClient,
    compressed_packed_forward,
    compressed_payload,
    entry_stream,
    event_time,
    forward,
    message,
    pack,
    pack_str_raw,
    packed_forward,
    sha512_hex,
)
from tests.support import free_port, metric_value, running_service, wait_until

T0 = 1_714_564_800  # 2024-05-01T12:00:00Z
NS = 1_000_000_000


def config(
    port: int | None = None, exporter: dict[str, Any] | None = None, **receiver: Any
) -> dict[str, Any]:
    return {
        "receivers": {
            "forward": {"endpoint": f"127.0.0.1:{free_port() if port is None else port}", **receiver}
        },
        "exporters": {"capture": exporter if exporter is not None else {"batch": {"flush_interval": 0}}},
        "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["capture"]}}},
    }


def port_of(svc: Service) -> int:
    return int(svc.receivers["forward"].port)  # type: ignore[attr-defined]


def captured(svc: Service) -> list[LogRecord]:
    return svc.exporters["capture"].items  # type: ignore[attr-defined,no-any-return]


def errors(svc: Service, reason: str) -> float:
    return metric_value(svc, "burnline_receiver_errors_total", {"component": "forward", "reason": reason})


def accepted(svc: Service) -> float:
    return metric_value(svc, "burnline_records_accepted_total", {"component": "forward", "signal": "logs"})


async def delivered(svc: Service, n: int) -> list[LogRecord]:
    await wait_until(lambda: len(captured(svc)) >= n)
    await asyncio.sleep(0.05)  # nothing more than expected arrives
    assert len(captured(svc)) == n
    return captured(svc)


async def test_past_max_in_flight_a_connection_waits_unread_until_a_turn_frees(tmp_path: Path) -> None:
    cfg = config()
    cfg["service"]["memory_limiter"] = {"max_in_flight": 1}
    async with running_service(cfg, str(tmp_path)) as svc:
        await svc.in_flight.acquire()  # as if another receiver's request held the only turn
        idle = await ForwardClient.connect(port_of(svc))  # connected, sending nothing: holds no turn
        client = await ForwardClient.connect(port_of(svc))
        await client.send(forward("fw", [[T0, {"log": "waits its turn"}]], {"chunk": "c-wait"}))
        await wait_until(lambda: metric_value(svc, "burnline_receivers_waiting") == 1)
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.3)
        assert captured(svc) == []
        svc.in_flight.release()
        assert await client.receive() == {"ack": "c-wait"}
        assert [r.body for r in await delivered(svc, 1)] == ["waits its turn"]
        # Acked and idle again: the turn was given back, and the idle connection never took one.
        await wait_until(lambda: metric_value(svc, "burnline_receivers_in_flight") == 0)
        assert metric_value(svc, "burnline_receivers_waiting") == 0
        await client.close()
        await idle.close()


@pytest.mark.parametrize(
    ("nanosecond_precision", "first_time", "first_ns"),
    [(False, T0, T0 * NS), (True, T0 + 0.25, T0 * NS + 250_000_000)],
    ids=["int-time", "event-time"],
)
async def test_fluent_logger_records_arrive_normalized(
    tmp_path: Path, nanosecond_precision: bool, first_time: float, first_ns: int
) -> None:
    async with running_service(config(), str(tmp_path)) as svc:

        def emit() -> None:
            client = sender.FluentSender(
                "app",
                host="127.0.0.1",
                port=port_of(svc),
                timeout=5.0,
                nanosecond_precision=nanosecond_precision,
            )
            try:
                ok = client.emit_with_time("access", first_time, {"message": "GET /", "user": "ann"})
                assert ok, client.last_error
                assert client.emit_with_time("access", T0 + 1, {"message": "GET /items"}), client.last_error
            finally:
                client.close()

        await asyncio.to_thread(emit)
        records = await delivered(svc, 2)
        assert [r.body for r in records] == ["GET /", "GET /items"]
        assert all(r.attributes["fluent.tag"] == "app.access" for r in records)
        assert [r.time_unix_nano for r in records] == [first_ns, (T0 + 1) * NS]
        assert all(r.observed_time_unix_nano > 0 for r in records)
        assert accepted(svc) == 2


async def test_message_mode_with_each_time_type(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(message("m.int", T0, {"log": "int"}))
        await client.send(message("m.event", event_time(T0, 123_456_789), {"log": "event"}))
        await client.send(message("m.float", T0 + 0.5, {"log": "float"}, {"size": 1}))
        records = await delivered(svc, 3)
        assert [(r.attributes["fluent.tag"], r.body, r.time_unix_nano) for r in records] == [
            ("m.int", "int", T0 * NS),
            ("m.event", "event", T0 * NS + 123_456_789),
            ("m.float", "float", T0 * NS + 500_000_000),
        ]
        await client.close()


async def test_forward_mode_accepts_both_entry_shapes(tmp_path: Path) -> None:
    entries = [
        [event_time(T0, 1), {"log": "plain entry"}],
        [[event_time(T0, 2), {"otlp": {"trace_id": "x"}}], {"log": "fluent-bit entry"}],
        [T0 + 3, {"log": "integer time"}],
    ]
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(forward("fw", entries, {"chunk": "c-forward"}))
        assert await client.receive() == {"ack": "c-forward"}
        records = await delivered(svc, 3)
        assert [r.body for r in records] == ["plain entry", "fluent-bit entry", "integer time"]
        assert [r.time_unix_nano for r in records] == [T0 * NS + 1, T0 * NS + 2, (T0 + 3) * NS]
        await client.close()


@pytest.mark.parametrize("as_str", [False, True], ids=["bin", "str"])
async def test_packed_forward_entries_as_bin_or_str(tmp_path: Path, as_str: bool) -> None:
    # EventTime bytes are not UTF-8: a str-typed entry stream only survives if it is read exactly.
    entries = [[event_time(T0, 999_999_999), {"log": f"packed {i}", "i": i}] for i in range(5)]
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(packed_forward("pf", entries, {"chunk": "c-packed", "size": 5}, as_str=as_str))
        assert await client.receive() == {"ack": "c-packed"}
        records = await delivered(svc, 5)
        assert [r.body for r in records] == [f"packed {i}" for i in range(5)]
        assert {r.time_unix_nano for r in records} == {T0 * NS + 999_999_999}
        assert {r.attributes["fluent.tag"] for r in records} == {"pf"}
        await client.close()


@pytest.mark.parametrize("members", [1, 3], ids=["one-gzip-member", "three-gzip-members"])
async def test_compressed_packed_forward(tmp_path: Path, members: int) -> None:
    entries = [[event_time(T0 + i), {"log": f"zipped {i}"}] for i in range(9)]
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(
            compressed_packed_forward("gz", entries, {"chunk": "c-gz", "size": 9}, members=members)
        )
        assert await client.receive() == {"ack": "c-gz"}
        records = await delivered(svc, 9)
        assert [r.body for r in records] == [f"zipped {i}" for i in range(9)]
        assert [r.time_unix_nano for r in records] == [(T0 + i) * NS for i in range(9)]
        await client.close()


@pytest.mark.parametrize(
    "chunk",
    [
        pack("p8T+eL9bRk2y8K0vZ3Lm1w=="),  # Fluentd/fluent-logger style: base64 text
        pack(b"\x00\x01binary-chunk\xff"),  # bin
        pack_str_raw(b"id-\xff\xfe-not-utf8"),  # a str whose bytes are not UTF-8
    ],
    ids=["base64-str", "bin", "non-utf8-str"],
)
async def test_chunk_ack_echoes_the_chunk_byte_for_byte(tmp_path: Path, chunk: bytes) -> None:
    frame = b"\x93" + pack("ack.test") + pack([[T0, {"log": "x"}]]) + b"\x81" + pack("chunk") + chunk
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(frame)
        _, raw = await client.receive_raw()
        assert raw == b"\x81" + pack("ack") + chunk
        await delivered(svc, 1)
        await client.close()


async def test_many_frames_in_one_write_are_acked_in_order(tmp_path: Path) -> None:
    frames = b"".join(message("burst", T0, {"log": f"line {i}"}, {"chunk": f"c{i}"}) for i in range(50))
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(frames)
        acks = [await client.receive() for _ in range(50)]
        assert acks == [{"ack": f"c{i}"} for i in range(50)]
        records = await delivered(svc, 50)
        assert [r.body for r in records] == [f"line {i}" for i in range(50)]
        await client.close()


async def test_ack_waits_until_the_pipeline_accepts(tmp_path: Path) -> None:
    # A paused exporter with room for 10 records: the second batch must wait for room, and so its ack.
    exporter = {
        "paused": True,
        "queue": {"max_records": 10, "block_timeout": "5s"},
        "batch": {"flush_interval": 0},
    }
    async with running_service(config(exporter=exporter), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        first = [[T0, {"log": f"a{i}"}] for i in range(10)]
        await client.send(forward("wait", first, {"chunk": "c1"}))
        assert await client.receive() == {"ack": "c1"}  # queued: accepted, though not yet exported
        await client.send(forward("wait", [[T0, {"log": "b"}]], {"chunk": "c2"}))
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.5)
        svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
        assert await client.receive() == {"ack": "c2"}
        await delivered(svc, 11)
        await client.close()


async def test_refused_batch_gets_no_ack_and_its_connection_closes(tmp_path: Path) -> None:
    exporter = {
        "paused": True,
        "queue": {"max_records": 10, "block_timeout": "100ms"},
        "batch": {"flush_interval": 0},
    }
    async with running_service(config(exporter=exporter), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(forward("bp", [[T0, {"log": f"a{i}"}] for i in range(10)], {"chunk": "c1"}))
        assert await client.receive() == {"ack": "c1"}
        second = forward("bp", [[T0, {"log": f"b{i}"}] for i in range(5)], {"chunk": "c2"})
        await client.send(second)
        with pytest.raises(EOFError):
            await client.receive()  # closed, and no ack came before
        refused = {"component": "forward", "signal": "logs", "reason": "exporter queue full"}
        assert metric_value(svc, "burnline_records_refused_total", refused) == 5
        assert accepted(svc) == 10

        svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
        retry = await ForwardClient.connect(port_of(svc))  # what Fluent Bit does next: resend the chunk
        await retry.send(second)
        assert await retry.receive() == {"ack": "c2"}
        records = await delivered(svc, 15)
        assert sorted(r.body for r in records) == sorted(
            [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)]
        )
        await retry.close()


async def test_unknown_options_are_tolerated(tmp_path: Path) -> None:
    options = {"chunk": "c-opt", "size": 2, "fluent_signal": 0, "compressed": "text", "future": {"x": [1, 2]}}
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(forward("opt", [[T0, {"log": "one"}], [T0, {"log": "two"}]], options))
        assert await client.receive() == {"ack": "c-opt"}
        await client.send(message("opt", T0, {"log": "three"}, None))
        await client.send(pack(["opt", T0, {"log": "four"}, None]))  # Docker's driver sends a nil option
        records = await delivered(svc, 4)
        assert [r.body for r in records] == ["one", "two", "three", "four"]
        await client.close()


async def test_fluent_bit_metrics_are_acked_and_counted_as_dropped(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        cmetrics = pack({"meta": {"cmetrics": {}}, "metrics": []})  # not log entries
        await client.send(
            pack(["fluentbit.metrics", cmetrics, {"chunk": "c-m", "fluent_signal": 1, "size": 1}])
        )
        assert await client.receive() == {"ack": "c-m"}
        await client.send(message("after", T0, {"log": "logs still flow"}, {"chunk": "c-l"}))
        assert await client.receive() == {"ack": "c-l"}
        await delivered(svc, 1)
        dropped = {"component": "forward", "signal": "metrics", "reason": "unsupported_signal"}
        assert metric_value(svc, "burnline_records_dropped_total", dropped) == 1
        await client.close()


async def test_corrupt_frame_closes_only_its_own_connection(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        healthy = await ForwardClient.connect(port_of(svc))
        broken = await ForwardClient.connect(port_of(svc))
        await wait_until(
            lambda: metric_value(svc, "burnline_receiver_connections", {"component": "forward"}) == 2
        )
        await broken.send(message("broken", T0, {"log": "fine"}, {"chunk": "b1"}))
        assert await broken.receive() == {"ack": "b1"}
        await broken.send(b"\xc1\x00\x01")  # 0xc1 is never used in msgpack
        assert await broken.closed_by_server()
        assert errors(svc, "malformed_msgpack") == 1

        await healthy.send(message("healthy", T0, {"log": "still working"}, {"chunk": "h1"}))
        assert await healthy.receive() == {"ack": "h1"}
        records = await delivered(svc, 2)
        assert [r.body for r in records] == ["fine", "still working"]
        await wait_until(
            lambda: metric_value(svc, "burnline_receiver_connections", {"component": "forward"}) == 1
        )
        await healthy.close()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (pack(["only-a-tag"]), "bad_message"),
        (pack(42), "bad_message"),
        (pack([1, [[T0, {"log": "x"}]]]), "bad_message"),
        (pack(["t", T0]), "bad_message"),
        (pack(["t", [[T0, {"log": "x"}]], "not a map"]), "bad_options"),
        (pack({1: "integer map keys"}), "bad_message"),
    ],
    ids=[
        "tag-only",
        "not-an-array",
        "tag-not-string",
        "message-without-record",
        "option-not-map",
        "frame-is-a-map",
    ],
)
async def test_wrong_frames_close_the_connection_and_are_counted(
    tmp_path: Path, frame: bytes, reason: str
) -> None:
    """A frame that is no frame names no chunk to acknowledge: the connection closes."""
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(frame)
        assert await client.closed_by_server()
        assert errors(svc, reason) == 1
        assert captured(svc) == []
        assert (
            metric_value(svc, "burnline_records_received_total", {"component": "forward", "signal": "logs"})
            == 0
        )


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "deadletter" / "forward.ndjson"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def failed(svc: Service) -> float:
    labels = {"component": "forward", "signal": "logs", "reason": "invalid_record"}
    return metric_value(svc, "burnline_records_failed_total", labels)


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([[T0, "not a map"], [T0, {"log": "good"}]], "a record must be a map"),
        ([[T0], [T0, {"log": "good"}]], "an entry must be [time, record]"),
        ([["yesterday", {"log": "x"}], [T0, {"log": "good"}]], "an entry time must be"),
        ([[msgpack.ExtType(0, b"\x00\x01"), {"log": "x"}], [T0, {"log": "good"}]], "an entry time must be"),
    ],
    ids=["record-not-map", "entry-too-short", "entry-time-is-text", "short-event-time"],
)
async def test_entries_that_are_no_records_are_dead_lettered_and_the_chunk_acked(
    tmp_path: Path, entries: list[Any], problem: str
) -> None:
    """One odd entry must not block its chunk (Fluent Bit would resend it forever)."""
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(pack(["t", entries, {"chunk": "odd-1"}]))
        assert await client.receive() == {"ack": "odd-1"}
        records = await delivered(svc, 1)
        assert [r.body for r in records] == ["good"]
        assert failed(svc) == 1
        (letter,) = dead_letters(tmp_path)
        assert letter["reason"] == "invalid_record" and problem in letter["detail"], letter
        assert problem in letter["record"]["problem"]
        assert letter["record"]["tag"] == "t" and letter["record"]["peer"].startswith("127.0.0.1:")
        # The connection stays usable.
        await client.send(message("t", T0, {"log": "after"}, {"chunk": "odd-2"}))
        assert await client.receive() == {"ack": "odd-2"}
        await client.close()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (pack(["t", "yesterday", {"chunk": "p"}]), "an entry must be [time, record]"),
        (pack(["t", pack([T0, {"log": "x"}])[:-2], {"chunk": "p"}]), "in the middle of an entry"),
        (pack(["t", b"\xc1", {"chunk": "p"}]), "invalid msgpack in packed entries"),
        (compressed_payload("t", b"\x1f\x8b\x08\x00garbage-not-deflate", {"chunk": "p"}), "not valid gzip"),
        (
            compressed_payload("t", gzip.compress(entry_stream([[T0, {"log": "x"}]]))[:-10], {"chunk": "p"}),
            "gzip",
        ),
        (
            compressed_payload("t", gzip.compress(b"\x00" * (1024 * 1024)), {"chunk": "p"}),
            "max_decompressed_size",
        ),
    ],
    ids=[
        "packed-text",
        "truncated-packed-entries",
        "packed-garbage",
        "not-gzip",
        "truncated-gzip",
        "gzip-bomb",
    ],
)
async def test_unreadable_packed_entries_are_dead_lettered_and_acked(
    tmp_path: Path, payload: bytes, problem: str
) -> None:
    """A sound frame whose packed entries cannot be read would fail the same way on every resend."""
    async with running_service(config(max_decompressed_size="64KiB"), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(payload)
        assert await client.receive() == {"ack": "p"}
        letters = dead_letters(tmp_path)
        assert failed(svc) == len(letters) >= 1
        assert any(problem in letter["record"]["problem"] for letter in letters), letters
        assert captured(svc) == []
        await client.close()


async def test_unsupported_compression_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(pack(["z", b"\x28\xb5\x2f\xfd", {"compressed": "zstd"}]))
        assert await client.closed_by_server()
        assert errors(svc, "unsupported_compression") == 1
        assert any(
            "'zstd' is not supported" in r.getMessage() and "127.0.0.1:" in r.getMessage()
            for r in caplog.records
        )


async def test_oversized_frames_are_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_service(config(max_frame_size="4KiB"), str(tmp_path)) as svc:
        whole = await ForwardClient.connect(port_of(svc))
        await whole.send(message("big", T0, {"log": "x" * 8192}))
        assert await whole.closed_by_server()

        # A frame announcing a 1 GiB string: the receiver stops reading once past the limit.
        endless = await ForwardClient.connect(port_of(svc))
        try:
            await endless.send(b"\x93" + pack("big") + b"\xdb\x40\x00\x00\x00" + b"a" * 16384)
        except ConnectionError:
            pass
        assert await endless.closed_by_server()
        assert errors(svc, "frame_too_large") == 2
        assert any("max_frame_size" in r.getMessage() for r in caplog.records)

        fits = await ForwardClient.connect(port_of(svc))
        await fits.send(message("small", T0, {"log": "x" * 1000}, {"chunk": "ok"}))
        assert await fits.receive() == {"ack": "ok"}
        await delivered(svc, 1)
        await fits.close()


async def test_udp_heartbeat_is_answered(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                replies.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=("127.0.0.1", port_of(svc)))
        try:
            transport.sendto(b"\0")
            assert await asyncio.wait_for(replies.get(), 5.0) == b"\0"
            transport.sendto(b"ping from out_forward")
            assert await asyncio.wait_for(replies.get(), 5.0) == b"\0"
        finally:
            transport.close()


async def test_heartbeat_can_be_turned_off(tmp_path: Path) -> None:
    async with running_service(config(heartbeat=False), str(tmp_path)) as svc:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port_of(svc)))  # the UDP port is free: nothing listens there


SHARED = {"shared_key": "s3cret-key", "self_hostname": "burnline-test"}


async def test_shared_key_handshake_succeeds(tmp_path: Path) -> None:
    async with running_service(config(security=SHARED), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        helo, pong, salt = await client.handshake("s3cret-key", hostname="fluent-bit-1")
        options = helo[1]
        assert isinstance(options["nonce"], bytes) and len(options["nonce"]) == 16
        assert options["auth"] == b"" and options["keepalive"] is True
        expected = sha512_hex(salt, b"burnline-test", options["nonce"], b"s3cret-key")
        assert pong == ["PONG", True, "", "burnline-test", expected]
        await client.send(message("secure", T0, {"log": "authenticated"}, {"chunk": "s1"}))
        assert await client.receive() == {"ack": "s1"}
        await delivered(svc, 1)
        await client.close()


@pytest.mark.parametrize(
    ("key", "hostname", "reason", "text"),
    [
        ("wrong-key", "fluent-bit-1", "auth_shared_key", "shared_key mismatch"),
        ("s3cret-key", "burnline-test", "auth_hostname", "same hostname between input and output"),
    ],
    ids=["wrong-key", "same-hostname"],
)
async def test_failed_handshake_answers_pong_false_and_closes(
    tmp_path: Path, key: str, hostname: str, reason: str, text: str
) -> None:
    async with running_service(config(security=SHARED), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        _, pong, _ = await client.handshake(key, hostname=hostname)
        assert pong[:2] == ["PONG", False] and text in pong[2]
        assert await client.closed_by_server()
        assert errors(svc, reason) == 1


async def test_client_skipping_the_handshake_is_refused(tmp_path: Path) -> None:
    async with running_service(config(security=SHARED), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        assert (await client.receive())[0] == "HELO"
        await client.send(message("sneaky", T0, {"log": "no PING"}, {"chunk": "x"}))
        assert await client.closed_by_server()
        assert errors(svc, "bad_handshake") == 1
        assert captured(svc) == []


USERS = {
    **SHARED,
    "user_auth": True,
    "users": [{"username": "fluent", "password": "pa55"}, {"username": "other", "password": "x"}],
}


@pytest.mark.parametrize(
    ("username", "password", "ok"),
    [
        ("fluent", "pa55", True),
        ("fluent", "wrong", False),
        ("nobody", "pa55", False),
        ("other", "pa55", False),
    ],
    ids=["right-password", "wrong-password", "unknown-user", "another-users-password"],
)
async def test_user_password_authentication(tmp_path: Path, username: str, password: str, ok: bool) -> None:
    async with running_service(config(security=USERS), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        helo, pong, _ = await client.handshake("s3cret-key", username=username, password=password)
        assert isinstance(helo[1]["auth"], bytes) and len(helo[1]["auth"]) == 16  # the password salt
        if ok:
            assert pong[1] is True
            await client.send(message("user", T0, {"log": "as fluent"}, {"chunk": "u1"}))
            assert await client.receive() == {"ack": "u1"}
            await delivered(svc, 1)
        else:
            assert pong[:3] == ["PONG", False, "username/password mismatch"]
            assert await client.closed_by_server()
            assert errors(svc, "auth_user") == 1
        await client.close()


async def test_tls_with_shared_key(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    async with running_service(config(tls=tls, security=SHARED), str(tmp_path)) as svc:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        client = await ForwardClient.connect(port_of(svc), tls=context)
        _, pong, _ = await client.handshake("s3cret-key")
        assert pong[1] is True
        await client.send(message("tls", T0, {"log": "encrypted"}, {"chunk": "t1"}))
        assert await client.receive() == {"ack": "t1"}
        records = await delivered(svc, 1)
        assert records[0].body == "encrypted"
        await client.close()


async def test_plain_client_on_tls_port_gets_nothing(tmp_path: Path) -> None:
    import trustme

    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "c.key"))
    tls = {"cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "c.key")}
    async with running_service(config(tls=tls), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(message("plain", T0, {"log": "not encrypted"}, {"chunk": "p"}))
        assert await client.closed_by_server()
        assert captured(svc) == []


async def test_max_connections(tmp_path: Path) -> None:
    async with running_service(config(max_connections=1), str(tmp_path)) as svc:
        first = await ForwardClient.connect(port_of(svc))
        await wait_until(
            lambda: metric_value(svc, "burnline_receiver_connections", {"component": "forward"}) == 1
        )
        second = await ForwardClient.connect(port_of(svc))
        assert await second.closed_by_server()
        assert errors(svc, "too_many_connections") == 1
        await first.send(message("first", T0, {"log": "kept"}, {"chunk": "f"}))
        assert await first.receive() == {"ack": "f"}
        await first.close()


async def test_idle_connections_are_closed(tmp_path: Path) -> None:
    async with running_service(config(idle_timeout="200ms"), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        assert await client.closed_by_server(timeout=5.0)
        await wait_until(
            lambda: metric_value(svc, "burnline_receiver_connections", {"component": "forward"}) == 0
        )


async def test_a_stalled_frame_times_out_but_a_slow_healthy_client_does_not(tmp_path: Path) -> None:
    async with running_service(config(frame_timeout="300ms"), str(tmp_path)) as svc:
        frame = message("slow", T0, {"log": "x"}, {"chunk": "s"})
        healthy = await ForwardClient.connect(port_of(svc))
        for _ in range(3):  # whole frames, slower than frame_timeout apart: never cut
            await asyncio.sleep(0.4)
            await healthy.send(frame)
            assert await healthy.receive() == {"ack": "s"}
        stalled = await ForwardClient.connect(port_of(svc))
        await stalled.send(frame[:-3])  # begins a frame and never finishes it
        assert await stalled.closed_by_server(timeout=5.0)
        assert errors(svc, "frame_timeout") == 1
        await healthy.send(frame)
        assert await healthy.receive() == {"ack": "s"}
        await healthy.close()


async def test_port_zero_readiness_and_stop(tmp_path: Path) -> None:
    async with running_service(config(port=0), str(tmp_path)) as svc:
        receiver = svc.receivers["forward"]
        assert port_of(svc) > 0 and receiver.ready()
        client = await ForwardClient.connect(port_of(svc))
        await client.send(message("zero", T0, {"log": "hello"}, {"chunk": "z"}))
        assert await client.receive() == {"ack": "z"}
        await wait_until(
            lambda: metric_value(svc, "burnline_receiver_connections", {"component": "forward"}) == 1
        )
        await svc.stop()
        assert not receiver.ready()
        assert await client.closed_by_server()
        assert metric_value(svc, "burnline_receiver_connections", {"component": "forward"}) == 0
        with pytest.raises(OSError):
            await ForwardClient.connect(port_of(svc))
        assert [r.body for r in captured(svc)] == ["hello"]


@pytest.mark.parametrize(
    ("security", "problem"),
    [
        ({"shared_key": ""}, "shared_key must not be empty"),
        ({"shared_key": "k", "user_auth": True}, "user_auth is on but users is empty"),
        ({"shared_key": "k", "users": [{"username": "a", "password": "1"}] * 2}, "lists a username twice"),
    ],
    ids=["empty-key", "user-auth-without-users", "duplicate-user"],
)
def test_security_config_is_validated(security: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config(config(security=security), env={})


def test_secrets_do_not_show_in_the_config_repr() -> None:
    parsed = parse_config(config(security=USERS), env={})
    text = repr(parsed.receivers["forward"])
    assert "s3cret-key" not in text and "pa55" not in text


async def test_stop_waits_for_the_batch_in_flight(tmp_path: Path) -> None:
    exporter = {
        "paused": True,
        "queue": {"max_records": 10, "block_timeout": "5s"},
        "batch": {"flush_interval": 0},
    }
    async with running_service(config(exporter=exporter), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        await client.send(forward("drain", [[T0, {"log": f"a{i}"}] for i in range(10)], {"chunk": "c1"}))
        assert await client.receive() == {"ack": "c1"}
        await client.send(message("drain", T0, {"log": "in flight"}, {"chunk": "c2"}))
        idle = await ForwardClient.connect(port_of(svc))
        await wait_until(
            lambda: metric_value(svc, "burnline_receiver_connections", {"component": "forward"}) == 2
        )

        stopping = asyncio.create_task(svc.stop(grace=5.0))
        assert await idle.closed_by_server()  # waiting for its client: closed at once
        await asyncio.sleep(0.2)
        assert not stopping.done()  # the batch in flight is neither accepted nor refused yet
        svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
        assert await client.receive() == {"ack": "c2"}  # accepted during stop: acknowledged
        assert await client.closed_by_server()
        assert await asyncio.wait_for(stopping, 10.0) == 0
        assert len(captured(svc)) == 11


async def test_data_right_behind_ping_is_kept(tmp_path: Path) -> None:
    async with running_service(config(security=SHARED), str(tmp_path)) as svc:
        client = await ForwardClient.connect(port_of(svc))
        nonce = (await client.receive())[1]["nonce"]
        salt = b"\x80\xff" + bytes(14)  # Fluent Bit packs its random salt as a str: not UTF-8
        digest = sha512_hex(salt, b"eager-client", nonce, b"s3cret-key")
        ping = (
            b"\x96"
            + pack("PING")
            + pack("eager-client")
            + pack_str_raw(salt)
            + pack(digest)
            + pack("")
            + pack("")
        )
        await client.send(ping + message("eager", T0, {"log": "sent with the PING"}, {"chunk": "e1"}))
        pong = await client.receive()
        assert pong[1] is True, pong
        assert await client.receive() == {"ack": "e1"}
        await delivered(svc, 1)
        await client.close()


async def test_tls_client_on_plain_port_is_told_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import ssl

    async with running_service(config(), str(tmp_path)) as svc:
        context = ssl.create_default_context()
        with pytest.raises((ssl.SSLError, ConnectionError, OSError, TimeoutError)):
            await ForwardClient.connect(port_of(svc), tls=context)
        await wait_until(lambda: errors(svc, "wrong_protocol") == 1)
        assert errors(svc, "bad_message") == 0
        lines = [r.getMessage() for r in caplog.records if "looks like TLS" in r.getMessage()]
        assert len(lines) == 1 and "has no tls configured" in lines[0], lines


def test_gzip_bomb_is_never_inflated_in_full() -> None:
    import tracemalloc
    import zlib

    from collector.receivers.forward.protocol import ProtocolError, gunzip_members

    deflater = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(deflater.compress(zeros) for _ in range(256)) + deflater.flush()  # 256 MiB inflated
    assert len(bomb) < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            gunzip_members(bomb, 64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "decompressed_too_large"
    assert peak < 8 * 1024 * 1024
