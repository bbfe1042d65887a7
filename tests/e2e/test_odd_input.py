"""Odd input never blocks a chunk or breaks output (issue 10): through the real receivers, the local
store and ``burnline logs``.

Odd keys (integers, msgpack bin, lists), NaN/±Inf, a record's own time in every common spelling, and
a hypothesis property: any msgpack map sent with ``chunk`` is acknowledged and reads back as JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.cli import main
from collector.core.service import Service
from collector.query.filters import LogQuery
from collector.query.logs import format_json, format_text, recent
from collector.query.store import open_reader
from tests.forward_frames import ForwardClient, event_time, forward, message
from tests.support import free_port, metric_value, running_service, wait_until

NS = 1_000_000_000


def config() -> dict[str, Any]:
    return {
        "receivers": {
            "forward": {"endpoint": f"127.0.0.1:{free_port()}"},
            "fluentbit_http": {"endpoint": f"127.0.0.1:{free_port()}"},
        },
        "exporters": {"local": {"batch": {"flush_interval": 0}}},
        "service": {
            "pipelines": {"logs": {"receivers": ["forward", "fluentbit_http"], "exporters": ["local"]}}
        },
    }


@asynccontextmanager
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(config(), str(tmp_path / "data")) as svc:
        yield svc


def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "burnline.db"


def forward_port(svc: Service) -> int:
    return int(svc.receivers["forward"].port)  # type: ignore[attr-defined]


def http_url(svc: Service) -> str:
    return f"http://127.0.0.1:{svc.receivers['fluentbit_http'].port}/app"  # type: ignore[attr-defined]


def stored_json(tmp_path: Path, grep: str) -> list[dict[str, Any]]:
    """What ``burnline logs --json`` prints for records whose body holds ``grep``, parsed (strictly:
    orjson refuses NaN and other invalid JSON)."""
    path = db(tmp_path)
    if not path.exists():
        return []
    conn = open_reader(path)
    try:
        rows, _ = recent(conn, LogQuery(grep=grep, limit=0))
    finally:
        conn.close()
    out = []
    for row in rows:
        out.append(orjson.loads(format_json(row)))
        assert format_text(row)  # the text view renders it too
    return out


async def wait_stored(tmp_path: Path, grep: str, n: int = 1) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        nonlocal found
        found = stored_json(tmp_path, grep)
        return len(found) >= n

    await wait_until(ready)
    return found


# ---- keys ----------------------------------------------------------------------------------------


async def test_an_integer_key_does_not_block_the_chunk(tmp_path: Path) -> None:
    """Issue 10 case 1: ``{1: "intkey"}`` with chunk set used to close the connection, unacked."""
    async with service(tmp_path) as svc:
        client = await ForwardClient.connect(forward_port(svc))
        await client.send(
            message("app", int(time.time()), {1: "intkey", "log": "int-key-record"}, {"chunk": "c1"})
        )
        assert await client.receive() == {"ack": "c1"}
        (stored,) = await wait_stored(tmp_path, "int-key-record")
        assert stored["attributes"]["1"] == "intkey"
        assert stored["attributes"]["fluent.tag"] == "app"
        await client.close()


async def test_a_bin_key_and_a_list_key_are_kept(tmp_path: Path) -> None:
    now = int(time.time())
    record = msgpack.packb({b"binkey": "from bin", "log": "bin-key-record"}, use_bin_type=True)
    # A map with a list as key: Python cannot hash it, the key arrives as its JSON text.
    list_keyed = b"\x82\xa3log\xaflist-key-record\x92\x01\x02\xa1v"
    async with service(tmp_path) as svc:
        client = await ForwardClient.connect(forward_port(svc))
        # A Forward frame with two entries, the second one's record a list-keyed map, packed by hand.
        entries = b"\x92" + b"\x92" + msgpack.packb(now) + record + b"\x92" + msgpack.packb(now) + list_keyed
        frame = b"\x93\xa3app" + entries + msgpack.packb({"chunk": "c2"})
        await client.send(frame)
        assert await client.receive() == {"ack": "c2"}
        (bin_keyed,) = await wait_stored(tmp_path, "bin-key-record")
        assert bin_keyed["attributes"]["binkey"] == "from bin"
        (listed,) = await wait_stored(tmp_path, "list-key-record")
        assert listed["attributes"]["[1,2]"] == "v"
        await client.close()


# ---- NaN -----------------------------------------------------------------------------------------


async def test_nan_is_stored_as_a_string_and_logs_json_stays_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 10 case 2: NaN printed as a bare NaN token; the text view dropped every attribute."""
    record = {
        "log": "nan-record",
        "float": math.nan,
        "up": math.inf,
        "down": -math.inf,
        "nested": {"list": [math.nan, {"deep": -math.inf}]},
        b"bin": 1.5,
    }
    async with service(tmp_path) as svc:
        client = await ForwardClient.connect(forward_port(svc))
        await client.send(forward("app", [[event_time(int(time.time())), record]], {"chunk": "n1"}))
        assert await client.receive() == {"ack": "n1"}
        await wait_stored(tmp_path, "nan-record")
        await client.close()
    capsys.readouterr()
    assert main(["logs", "--db", str(db(tmp_path)), "--json", "--grep", "nan-record"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    printed = orjson.loads(out[0])  # strict JSON
    assert printed["attributes"]["float"] == "NaN"
    assert printed["attributes"]["up"] == "Infinity" and printed["attributes"]["down"] == "-Infinity"
    assert printed["attributes"]["nested"] == {"list": ["NaN", {"deep": "-Infinity"}]}
    assert printed["attributes"]["bin"] == 1.5
    assert main(["logs", "--db", str(db(tmp_path)), "--grep", "nan-record"]) == 0
    text = capsys.readouterr().out
    assert "float=NaN" in text and "fluent.tag=app" in text and "bin=1.5" in text


# ---- a record's own time -------------------------------------------------------------------------

# A recent time, so that every default time window of the CLI includes it.
EVENT_S = int(time.time()) - 600
EVENT_NS = EVENT_S * NS + 123_000_000
EVENT_RFC3339 = datetime.fromtimestamp(EVENT_S, UTC).strftime("%Y-%m-%dT%H:%M:%S") + ".123Z"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("time", EVENT_RFC3339),
        ("timestamp", EVENT_NS / NS),  # epoch seconds, fractional
        ("@timestamp", EVENT_NS // 1_000_000),  # epoch millis
        ("ts", str(EVENT_NS // 1_000)),  # epoch micros as a string
        ("ts", EVENT_NS),  # epoch nanos
    ],
    ids=["time-rfc3339", "timestamp-seconds", "@timestamp-millis", "ts-micros-string", "ts-nanos"],
)
async def test_a_records_own_time_becomes_its_time(tmp_path: Path, key: str, value: Any) -> None:
    """Issue 10 case 3: the record's ``time`` was deleted and the receipt time stored."""
    marker = f"own-time-{key}"
    async with service(tmp_path) as svc, aiohttp.ClientSession() as session:
        before = time.time_ns()
        body = orjson.dumps([{"log": marker, key: value}])
        async with session.post(http_url(svc), data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 201
        (stored,) = await wait_stored(tmp_path, marker)
    # Through a float of seconds the last digits may round: within a microsecond.
    assert abs(stored["time_unix_nano"] - EVENT_NS) < 1_000, stored
    assert stored["observed_time_unix_nano"] >= before  # the receipt time stays the observed time
    assert key not in stored["attributes"]


async def test_an_eventtime_field_in_a_forward_record_becomes_its_time(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        client = await ForwardClient.connect(forward_port(svc))
        record = {"log": "eventtime-field", "time": event_time(EVENT_S, 5)}
        await client.send(forward("app", [[int(time.time()), record]], {"chunk": "t1"}))
        assert await client.receive() == {"ack": "t1"}
        (stored,) = await wait_stored(tmp_path, "eventtime-field")
        await client.close()
    assert stored["time_unix_nano"] == EVENT_S * NS + 5


async def test_an_unreadable_time_keeps_the_receipt_time_and_the_raw_value(tmp_path: Path) -> None:
    async with service(tmp_path) as svc, aiohttp.ClientSession() as session:
        before = time.time_ns()
        body = orjson.dumps([{"log": "bad-time", "time": "half past nine"}])
        async with session.post(http_url(svc), data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 201
        (stored,) = await wait_stored(tmp_path, "bad-time")
    assert stored["attributes"]["time"] == "half past nine"
    assert (
        stored["time_unix_nano"] >= before and stored["time_unix_nano"] == stored["observed_time_unix_nano"]
    )


# ---- the property --------------------------------------------------------------------------------

_KEYS = (
    st.text(max_size=8)
    | st.binary(max_size=8)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.booleans()
    | st.none()
    | st.floats()
)
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()  # NaN and ±Inf included
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=20,
)
_MAPS = st.dictionaries(_KEYS, _VALUES, max_size=8)


def _send_and_ack(port: int, frame: bytes, chunk: str) -> None:
    """A blocking Forward client: one frame, then its ack (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(frame)
        unpacker = msgpack.Unpacker(raw=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            data = sock.recv(4096)
            assert data, "the connection closed without an ack"
            unpacker.feed(data)
            for reply in unpacker:
                assert reply == {"ack": chunk}
                return
        raise AssertionError("no ack within 30s")


def _stored_within(tmp_path: Path, marker: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = stored_json(tmp_path, marker)
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{marker} not stored within 30s")


async def test_any_msgpack_map_is_acknowledged_and_reads_back_as_json(tmp_path: Path) -> None:
    counter = itertools.count()
    async with service(tmp_path) as svc:
        port = forward_port(svc)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(record=_MAPS)
        def prop(record: dict[Any, Any]) -> None:
            n = next(counter)
            marker = f"prop-marker-{n}-"
            # The marker is the body; the rest is the generated map, whatever it holds.
            record = {**record, "log": marker}
            record.pop(b"log", None)
            frame = msgpack.packb(
                ["prop", [[event_time(int(time.time())), record]], {"chunk": f"p{n}"}],
                use_bin_type=True,
            )
            _send_and_ack(port, frame, f"p{n}")
            (stored,) = _stored_within(tmp_path, marker)
            assert stored["body"] == marker
            assert stored["attributes"]["fluent.tag"] == "prop"

        # The service runs in this loop; the blocking property runs beside it in a thread.
        await asyncio.to_thread(prop)
        assert (
            metric_value(
                svc, "burnline_receiver_errors_total", {"component": "forward", "reason": "bad_message"}
            )
            == 0
        )
