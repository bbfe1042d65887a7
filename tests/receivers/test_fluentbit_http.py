"""fluentbit_http: Fluent Bit's http output formats, gzip, tags, auth, limits, errors and backpressure.

Requests are real HTTP requests to a running service whose pipeline ends in the ``capture`` exporter.
What the receiver hands the normalizer (tag, times, records) is observed through a spy, so that these
tests pin the receiver's own work and not the normalizer's mapping.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import ssl
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
import trustme
from multidict import CIMultiDictProxy

from collector.core.service import Service
from collector.httpserver.answers import Rejected
from collector.httpserver.body import inflate
from collector.normalize.fluent import normalize_fluent
from collector.receivers.fluentbit_http import receiver as fluentbit_http
from collector.receivers.fluentbit_http.decode import json_time_ns, sniff
from tests.support import free_port, metric_value, running_service, wait_until

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
T0_NS = T0 * 1_000_000_000
RID = "fluentbit_http"


def event_time(seconds: int, nanos: int = 0) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def chunk(*events: Any) -> bytes:
    """A Fluent Bit chunk: msgpack events one after another (no enclosing array)."""
    return b"".join(msgpack.packb(e) for e in events)


class NormalizeSpy:
    """Records each normalize_fluent call the receiver makes, then runs the real one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[int, dict[str, Any]]]]] = []
        self.threads: list[int] = []  # where each call ran
        self._real = normalize_fluent

    def __call__(self, tag: str, entries: Iterable[tuple[int, dict[str, Any]]], *args: Any) -> Any:
        entries = list(entries)
        self.calls.append((tag, entries))
        self.threads.append(threading.get_ident())
        return self._real(tag, entries, *args)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for _, entries in self.calls for _, record in entries]

    @property
    def times(self) -> list[int]:
        return [t for _, entries in self.calls for t, _ in entries]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> NormalizeSpy:
    s = NormalizeSpy()
    monkeypatch.setattr(fluentbit_http, "normalize_fluent", s)
    return s


class Harness:
    def __init__(self, svc: Service, url: str, session: aiohttp.ClientSession) -> None:
        self.svc = svc
        self.url = url
        self.session = session

    @property
    def captured(self) -> list[Any]:
        return list(self.svc.exporters["capture"].items)  # type: ignore[attr-defined]

    async def post(
        self, body: bytes, path: str = "/", content_type: str | None = "application/json", **kwargs: Any
    ) -> tuple[int, str, CIMultiDictProxy[str]]:
        headers = dict(kwargs.pop("headers", {}))
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with self.session.post(self.url + path, data=body, headers=headers, **kwargs) as resp:
            return resp.status, await resp.text(), resp.headers

    def errors(self, reason: str) -> float:
        return metric_value(self.svc, "burnline_receiver_errors_total", {"component": RID, "reason": reason})

    def accepted(self) -> float:
        return metric_value(self.svc, "burnline_records_accepted_total", {"component": RID, "signal": "logs"})


@asynccontextmanager
async def harness(
    tmp_path: Path, capture: dict[str, Any] | None = None, port: int | None = None, **receiver: Any
) -> AsyncIterator[Harness]:
    port = free_port() if port is None else port
    receiver.setdefault("endpoint", f"127.0.0.1:{port}")
    config = {
        "receivers": {RID: receiver},
        # One sender, so that captured records keep the order of the requests that carried them.
        "exporters": {"capture": {"batch": {"flush_interval": "10ms"}, "concurrency": 1, **(capture or {})}},
        "service": {"pipelines": {"logs": {"receivers": [RID], "exporters": ["capture"]}}},
    }
    async with running_service(config, str(tmp_path / "data"), grace=2.0) as svc:
        actual = svc.receivers[RID].port  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as session:
            yield Harness(svc, f"http://127.0.0.1:{actual}", session)


# --- formats -------------------------------------------------------------------------------------


async def test_json_array_with_double_dates(tmp_path: Path, spy: NormalizeSpy) -> None:
    body = orjson.dumps(
        [
            {"date": T0 + 0.123456, "log": "first", "stream": "stdout"},
            {"date": T0 + 1.5, "log": "second", "kubernetes": {"pod_name": "web-1"}},
        ]
    )
    async with harness(tmp_path) as h:
        status, text, _ = await h.post(body, "/kube.var.log")
        assert (status, text) == (201, "")
        await wait_until(lambda: len(h.captured) == 2)
        assert [r.time_unix_nano for r in h.captured] == [T0_NS + 123_456_000, T0_NS + 1_500_000_000]
        assert [r.body for r in h.captured] == ["first", "second"]
        assert h.accepted() == 2
    assert len(spy.calls) == 1  # one request: one normalization, one batch
    tag, entries = spy.calls[0]
    assert tag == "kube.var.log"
    assert [record for _, record in entries] == [
        {"log": "first", "stream": "stdout"},
        {"log": "second", "kubernetes": {"pod_name": "web-1"}},
    ]


@pytest.mark.parametrize(
    ("date", "expected_ns"),
    [
        pytest.param(T0 + 0.000681, T0_NS + 681_000, id="double"),
        pytest.param("2023-11-14T22:13:20.000681Z", T0_NS + 681_000, id="iso8601"),
        pytest.param("2023-11-14 22:13:20.000681", T0_NS + 681_000, id="java_sql_timestamp"),
        pytest.param(T0, T0_NS, id="epoch"),
        pytest.param(T0 * 1000 + 681, T0_NS + 681_000_000, id="epoch_ms"),
        pytest.param("2023-11-15T00:13:20.5+02:00", T0_NS + 500_000_000, id="iso8601-offset"),
    ],
)
async def test_json_date_formats(tmp_path: Path, spy: NormalizeSpy, date: Any, expected_ns: int) -> None:
    async with harness(tmp_path) as h:
        status, _, _ = await h.post(orjson.dumps([{"date": date, "log": "x"}]))
        assert status == 201
        await wait_until(lambda: len(h.captured) == 1)
        assert h.captured[0].time_unix_nano == expected_ns
    assert spy.records == [{"log": "x"}]


async def test_custom_disabled_and_unreadable_time_keys(tmp_path: Path, spy: NormalizeSpy) -> None:
    async with harness(tmp_path, time_key="ts") as h:
        before = time.time_ns()
        body = orjson.dumps([{"ts": T0, "log": "a"}, {"ts": "yesterday", "log": "b"}, {"log": "c"}])
        assert (await h.post(body))[0] == 201
        after = time.time_ns()
    assert spy.times[0] == T0_NS
    # No readable time: the arrival time, and the value stays in the record.
    assert all(before <= t <= after for t in spy.times[1:])
    assert spy.records == [{"log": "a"}, {"ts": "yesterday", "log": "b"}, {"log": "c"}]

    spy.calls.clear()
    async with harness(tmp_path, time_key=None) as h:
        assert (await h.post(orjson.dumps([{"date": T0, "log": "a"}])))[0] == 201
    assert spy.records == [{"date": T0, "log": "a"}]
    assert spy.times[0] != T0_NS


@pytest.mark.parametrize(
    ("content_type", "separator"),
    [
        pytest.param("application/x-ndjson", b"\n", id="json_lines"),
        pytest.param("application/json", b"", id="json_stream"),
        pytest.param("application/json; charset=utf-8", b"\r\n", id="json_lines-crlf"),
    ],
)
async def test_json_lines_and_stream(
    tmp_path: Path, spy: NormalizeSpy, content_type: str, separator: bytes
) -> None:
    lines = [orjson.dumps({"date": T0 + i, "log": f"line {i}", "nested": {"a": "}{"}}) for i in range(3)]
    body = separator.join(lines) + separator
    async with harness(tmp_path) as h:
        status, _, _ = await h.post(body, "/app.log", content_type)
        assert status == 201
        await wait_until(lambda: len(h.captured) == 3)
    assert spy.times == [T0_NS, T0_NS + 1_000_000_000, T0_NS + 2_000_000_000]
    assert [r["log"] for r in spy.records] == ["line 0", "line 1", "line 2"]
    assert spy.records[0]["nested"] == {"a": "}{"}


async def test_msgpack_event_shapes(tmp_path: Path, spy: NormalizeSpy) -> None:
    body = chunk(
        [event_time(T0, 123), {"log": "v1 eventtime"}],
        [[event_time(T0 + 1, 5), {}], {"log": "v2 eventtime"}],
        [T0 + 2, {"log": "v1 int"}],
        [[T0 + 3.25, {}], {"log": "v2 float"}],
    )
    async with harness(tmp_path) as h:
        status, _, _ = await h.post(body, "/app.log", "application/msgpack")
        assert status == 201
        await wait_until(lambda: len(h.captured) == 4)
        assert [r.body for r in h.captured] == ["v1 eventtime", "v2 eventtime", "v1 int", "v2 float"]
    assert spy.times == [T0_NS + 123, T0_NS + 1_000_000_005, T0_NS + 2_000_000_000, T0_NS + 3_250_000_000]
    assert spy.calls[0][0] == "app.log"


async def test_msgpack_groups_and_metadata_become_internal(tmp_path: Path, spy: NormalizeSpy) -> None:
    resource = {"resource": {"attributes": {"service.name": "checkout"}}}
    body = chunk(
        [[event_time(0xFFFFFFFF), {"schema": "otlp"}], resource],  # group start (-1)
        [[event_time(T0), {"otlp": {"severity_number": 9}}], {"log": "in group"}],
        [[event_time(0xFFFFFFFE), {}], {}],  # group end (-2)
        [[event_time(T0 + 1), {}], {"log": "after"}],
        [[-1, {}], resource],  # markers as plain integers too
        [[event_time(T0 + 2), {}], "not a map"],
        [[-2, {}], {}],
    )
    async with harness(tmp_path) as h:
        assert (await h.post(body, content_type="application/x-msgpack"))[0] == 201
        await wait_until(lambda: len(h.captured) == 3)
    assert spy.records == [
        {
            "log": "in group",
            "__internal__": {"group_attributes": resource, "log_metadata": {"otlp": {"severity_number": 9}}},
        },
        {"log": "after"},
        {"log": "not a map", "__internal__": {"group_attributes": resource}},
    ]


async def test_gelf_lines(tmp_path: Path, spy: NormalizeSpy) -> None:
    gelf = [
        {
            "version": "1.1",
            "short_message": "disk full",
            "host": "node-1",
            "level": 3,
            "timestamp": T0 + 0.25,
            "_app": "db",
            "_kubernetes_pod_name": "db-0",
        },
        {"version": "1.1", "short_message": "ok", "host": "node-1", "timestamp": T0 + 1},
    ]
    body = b"\n".join(orjson.dumps(g) for g in gelf) + b"\n"
    async with harness(tmp_path) as h:
        assert (await h.post(body, "/gelf"))[0] == 201
    assert spy.times == [T0_NS + 250_000_000, T0_NS + 1_000_000_000]
    assert spy.records == [
        {
            "message": "disk full",
            "host": "node-1",
            "level": "err",
            "app": "db",
            "kubernetes_pod_name": "db-0",
        },
        {"message": "ok", "host": "node-1"},
    ]


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain"])
async def test_format_is_sniffed_without_a_useful_content_type(
    tmp_path: Path, spy: NormalizeSpy, content_type: str | None
) -> None:
    async with harness(tmp_path) as h:
        assert (await h.post(chunk([event_time(T0), {"log": "mp"}]), content_type=content_type))[0] == 201
        assert (await h.post(b'  {"date": 1700000000, "log": "js"}\n', content_type=content_type))[0] == 201
        assert (await h.post(b'[{"log": "arr"}]', content_type="application/x-unknown"))[0] == 201
        status, text, _ = await h.post(b"a=1&b=2", content_type="application/x-www-form-urlencoded")
        assert status == 415
        assert "neither JSON nor msgpack" in text
        assert h.errors("unsupported_media_type") == 1
    assert [r["log"] for r in spy.records] == ["mp", "js", "arr"]


async def test_large_request_is_one_batch(tmp_path: Path, spy: NormalizeSpy) -> None:
    # Big enough to be decoded off the event loop.
    body = b"\n".join(orjson.dumps({"date": T0 + i, "log": "x" * 200, "i": i}) for i in range(5000))
    assert len(body) > fluentbit_http._THREAD_DECODE_BYTES
    async with harness(tmp_path) as h:
        assert (await h.post(body, content_type="application/x-ndjson"))[0] == 201
        await wait_until(lambda: len(h.captured) == 5000)
        assert h.accepted() == 5000
    assert len(spy.calls) == 1
    assert [r["i"] for r in spy.records] == list(range(5000))
    assert spy.threads != [threading.get_ident()]


async def test_a_body_under_the_thread_bound_is_decoded_on_the_loop(
    tmp_path: Path, spy: NormalizeSpy
) -> None:
    # A thread holding the GIL would run none of it beside the loop (bench/RESULTS.md).
    body = b"\n".join(orjson.dumps({"date": T0 + i, "log": "x" * 200, "i": i}) for i in range(3000))
    assert 256 * 1024 < len(body) < fluentbit_http._THREAD_DECODE_BYTES
    async with harness(tmp_path) as h:
        assert (await h.post(body, content_type="application/x-ndjson"))[0] == 201
        await wait_until(lambda: len(h.captured) == 3000)
    assert spy.threads == [threading.get_ident()]


# --- compression ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies(tmp_path: Path, spy: NormalizeSpy, encoding: str) -> None:
    def pack(data: bytes) -> bytes:
        return gzip.compress(data) if encoding == "gzip" else zlib.compress(data)

    lines = b"\n".join(orjson.dumps({"date": T0, "log": f"l{i}"}) for i in range(50))
    mp = chunk(*([[event_time(T0), {}], {"log": f"m{i}"}] for i in range(50)))
    async with harness(tmp_path) as h:
        headers = {"Content-Encoding": encoding}
        assert (await h.post(pack(lines), content_type="application/x-ndjson", headers=headers))[0] == 201
        assert (await h.post(pack(mp), content_type="application/msgpack", headers=headers))[0] == 201
        await wait_until(lambda: len(h.captured) == 100)
    assert [r["log"] for r in spy.records] == [f"l{i}" for i in range(50)] + [f"m{i}" for i in range(50)]


async def test_concatenated_gzip_members(tmp_path: Path, spy: NormalizeSpy) -> None:
    body = gzip.compress(b'{"log": "a"}\n') + gzip.compress(b'{"log": "b"}\n')
    async with harness(tmp_path) as h:
        assert (await h.post(body, headers={"Content-Encoding": "gzip"}))[0] == 201
    assert spy.records == [{"log": "a"}, {"log": "b"}]


def gzip_bomb(inflated: int, byte: bytes = b"\n") -> bytes:
    """A small gzip stream that inflates to ``inflated`` bytes (built without holding them)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = byte * (1024 * 1024)
    parts = [packer.compress(block) for _ in range(inflated // len(block))]
    return b"".join([*parts, packer.flush()])


async def test_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path, spy: NormalizeSpy) -> None:
    bomb = gzip_bomb(64 * 1024 * 1024)
    assert len(bomb) < 200 * 1024
    async with harness(tmp_path, max_decompressed_size="1MiB") as h:
        status, text, _ = await h.post(
            bomb, content_type="application/x-ndjson", headers={"Content-Encoding": "gzip"}
        )
        assert status == 413
        assert "inflates past the 1048576-byte limit" in text
        assert h.errors("too_large") == 1
        # The receiver still serves.
        assert (await h.post(gzip.compress(b'{"log": "ok"}'), headers={"Content-Encoding": "gzip"}))[0] == 201
    assert spy.records == [{"log": "ok"}]


def test_inflate_stops_at_the_limit() -> None:
    data = b"a" * 1000
    assert inflate(gzip.compress(data), "gzip", 1000) == data  # exactly at the limit is fine
    with pytest.raises(Rejected) as caught:
        inflate(gzip.compress(data), "gzip", 999)
    assert caught.value.status == 413
    # A bomb far bigger than the limit is cut off at the limit, never inflated whole.
    bomb = gzip_bomb(64 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(Rejected) as caught:
            inflate(bomb, "gzip", 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.status == 413
    assert peak < 8 * 1024 * 1024  # about the limit, not the 64 MiB the bomb holds
    for bad, message in [(b"not gzip at all", "invalid gzip"), (gzip.compress(data)[:-12], "truncated")]:
        with pytest.raises(Rejected) as caught:
            inflate(bad, "gzip", 10_000)
        assert (caught.value.status, caught.value.reason) == (400, "bad_encoding")
        assert message in caught.value.detail


# --- tags ----------------------------------------------------------------------------------------


async def test_tag_from_path_header_or_default(tmp_path: Path, spy: NormalizeSpy) -> None:
    body = b'{"log": "x"}'
    async with harness(tmp_path, default_tag="fallback") as h:
        await h.post(body, "/app.log")
        await h.post(body, "/ignored", headers={"X-Fluent-Tag": "kube.var.log.containers.web"})
        await h.post(body, "/", headers={"x-fluent-tag": "lower.case.header"})
        await h.post(body, "/api/v1/logs%20now?x=1")  # sanitized like Fluent Bit's http input
        await h.post(body, "/")
    assert [tag for tag, _ in spy.calls] == [
        "app.log",
        "kube.var.log.containers.web",
        "lower.case.header",
        "api_v1_logs_now",
        "fallback",
    ]


async def test_custom_tag_header_and_receiver_id_default(tmp_path: Path, spy: NormalizeSpy) -> None:
    async with harness(tmp_path, tag_header="FLUENT-TAG") as h:
        await h.post(b'{"log": "x"}', "/", headers={"Fluent-Tag": "from.header", "X-Fluent-Tag": "other"})
        await h.post(b'{"log": "x"}', "/")
    assert [tag for tag, _ in spy.calls] == ["from.header", RID]


# --- auth ----------------------------------------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header Fluent Bit sends for http_User/http_Passwd."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_auth(tmp_path: Path, spy: NormalizeSpy) -> None:
    body = b'{"log": "x"}'
    async with harness(tmp_path, username="fluent", password="s3cret") as h:
        assert (await h.post(body, headers=basic("fluent", "s3cret")))[0] == 201
        for headers in (basic("fluent", "wrong"), basic("other", "s3cret"), basic("fluent", "s3cret ")):
            status, text, answer = await h.post(body, headers=headers)
            assert (status, text) == (401, "wrong username or password\n")
            assert answer["WWW-Authenticate"].startswith("Basic ")
        status, text, answer = await h.post(body)
        assert (status, text) == (401, "authentication required\n")
        async with h.session.get(h.url + "/health") as resp:
            assert resp.status == 200  # probes need no credentials
        status, text, _ = await h.post(body, headers={"Authorization": "Basic !!notbase64"})
        assert (status, text) == (401, "malformed Basic credentials\n")
        assert h.errors("unauthorized") == 5
        await wait_until(lambda: len(h.captured) == 1)
    assert len(spy.calls) == 1


async def test_bearer_token_or_basic(tmp_path: Path, spy: NormalizeSpy) -> None:
    body = b'{"log": "x"}'
    async with harness(tmp_path, username="fluent", bearer_token="tok-123") as h:
        assert (await h.post(body, headers={"Authorization": "Bearer tok-123"}))[0] == 201
        assert (await h.post(body, headers=basic("fluent", "")))[0] == 201  # http_Passwd unset
        status, _, headers = await h.post(body, headers={"Authorization": "Bearer tok-1234"})
        assert status == 401
        assert sorted(headers.getall("WWW-Authenticate")) == [
            'Basic realm="burnline", charset="UTF-8"',
            'Bearer realm="burnline"',
        ]
        assert h.errors("unauthorized") == 1
    assert len(spy.calls) == 2


# --- bad requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A request the receiver must turn down, and how: status, counter reason, words of the answer."""

    body: bytes
    content_type: str
    status: int
    reason: str
    message: str
    encoding: str | None = None


BAD_REQUESTS = {
    "json": Bad(b'[{"log": "x"', "application/json", 400, "invalid_json", "invalid JSON"),
    "json-lines": Bad(b'{"log": 1}\n{"log": ', "application/x-ndjson", 400, "invalid_json", "invalid JSON"),
    "json-not-object": Bad(
        b'[{"log": "x"}, 42]', "application/json", 400, "bad_shape", "record 1 is a JSON int"
    ),
    "json-scalar": Bad(b'"just a string"', "application/json", 400, "bad_shape", "expected an object"),
    "msgpack-bytes": Bad(b"\x92\xc1\x00", "application/msgpack", 400, "invalid_msgpack", "invalid msgpack"),
    "msgpack-truncated": Bad(
        chunk([T0, {"log": "x"}], [T0, {"log": "y"}])[:-2],
        "application/msgpack",
        400,
        "invalid_msgpack",
        "the last 11 bytes are an incomplete event",
    ),
    "gzip": Bad(b"\x1f\x8b\x08garbage", "application/json", 400, "bad_encoding", "invalid gzip data", "gzip"),
    "json-too-deep": Bad(
        b'{"log": "x"}\n' + b'{"a": [' * 50_000, "application/json", 400, "invalid_json", "invalid JSON"
    ),
    "empty": Bad(b"", "application/json", 400, "empty_body", "no body"),
    "zstd": Bad(b"{}", "application/json", 415, "unsupported_encoding", "'zstd' is not supported", "zstd"),
}


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ([T0, {"log": "x"}, "extra"], "event 0 is array of 3"),
        (["noon", {"log": "x"}], "time is str"),
        ([[T0, "meta"], {"log": "x"}], "header is not [time, metadata]"),
    ],
    ids=["msgpack-shape", "msgpack-time", "msgpack-metadata"],
)
async def test_msgpack_events_that_are_no_records_are_dead_lettered(
    tmp_path: Path, event: list[Any], problem: str
) -> None:
    """One odd event does not cost its chunk: the rest is taken, the odd one kept with its reason."""
    async with harness(tmp_path) as h:
        body = chunk(event, [T0, {"log": "good"}])
        status, _, _ = await h.post(body, content_type="application/msgpack")
        assert status == 201
        await wait_until(lambda: len(h.captured) == 1)
        assert h.captured[0].body == "good"
        labels = {"component": RID, "signal": "logs", "reason": "invalid_record"}
        assert metric_value(h.svc, "burnline_records_failed_total", labels) == 1
        lines = (tmp_path / "data" / "deadletter" / f"{RID}.ndjson").read_bytes().splitlines()
        (letter,) = [orjson.loads(line) for line in lines]
        assert problem in letter["record"]["problem"] and letter["record"]["tag"] == RID


async def test_msgpack_any_key_type_is_kept_as_text(tmp_path: Path) -> None:
    record = {1: "int", b"bin": "bin", "nan": float("nan"), "log": "odd keys", "nested": {2: [b"\xff"]}}
    body = msgpack.packb([T0, record], use_bin_type=True)
    # A list as a map key: Python cannot hash it; the key still arrives, as its JSON text.
    odd = b"\x92" + msgpack.packb(T0) + b"\x82\xa3log\xa4list\x91\x01\xa1v"
    async with harness(tmp_path) as h:
        status, _, _ = await h.post(body + odd, content_type="application/msgpack")
        assert status == 201
        await wait_until(lambda: len(h.captured) == 2)
        first, second = h.captured
        assert first.attributes["1"] == "int" and first.attributes["bin"] == "bin"
        assert first.attributes["nan"] == "NaN" and first.attributes["nested"] == {"2": [b"\xff"]}
        assert second.body == "list" and second.attributes["[1]"] == "v"


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_bad_requests(tmp_path: Path, spy: NormalizeSpy, case: Bad) -> None:
    headers = {"Content-Encoding": case.encoding} if case.encoding else {}
    async with harness(tmp_path) as h:
        status, text, _ = await h.post(case.body, content_type=case.content_type, headers=headers)
        assert status == case.status
        assert case.message in text
        assert h.errors(case.reason) == 1
        # A bad request takes nothing: no record goes through from a batch that failed to decode.
        assert (await h.post(b'{"log": "after"}'))[0] == 201
        await wait_until(lambda: len(h.captured) == 1)
        assert h.accepted() == 1
    assert spy.records == [{"log": "after"}]


async def test_oversized_bodies_get_413(tmp_path: Path) -> None:
    big = b"[" + b",".join(b'{"log": "xxxxxxxxxxxxxxxxxxxx"}' for _ in range(100)) + b"]"
    assert len(big) > 1024

    async def dribble() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check up front
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    async with harness(tmp_path, max_body_size="1KiB") as h:
        status, text, _ = await h.post(big)
        assert status == 413
        assert "over the 1024-byte limit" in text
        status, _, _ = await h.post(dribble())  # type: ignore[arg-type]
        assert status == 413
        assert h.errors("too_large") == 2
        small = big[:900].rsplit(b",", 1)[0] + b"]"
        assert (await h.post(small))[0] == 201
        await wait_until(lambda: len(h.captured) == small.count(b"{"))


async def test_methods_and_health(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for path in ("/", "/health"):
            async with h.session.get(h.url + path) as resp:
                assert resp.status == 200
        async with h.session.get(h.url + "/app.log") as resp:
            assert resp.status == 405
            assert "POST" in resp.headers["Allow"]
        async with h.session.delete(h.url + "/") as resp:
            assert resp.status == 405
        async with h.session.put(h.url + "/app.log", data=b'{"log": "put"}') as resp:
            assert resp.status == 201  # Fluent Bit's http_method PUT
        assert h.errors("method_not_allowed") == 2


async def test_repeated_problems_are_logged_once_per_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path) as h:
        for _ in range(5):
            assert (await h.post(b"[oops", "/app.log"))[0] == 400
        assert (await h.post(b"", "/app.log"))[0] == 400
        assert h.errors("invalid_json") == 5  # every one is counted
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == f"burnline.receiver.{RID}" and r.levelname == "WARNING"
    ]
    assert len(lines) == 2, lines
    assert lines[0].startswith("answered 400 to POST /app.log from 127.0.0.1: invalid JSON")
    assert "no body" in lines[1]


# --- backpressure and isolation ------------------------------------------------------------------


async def test_backpressure_answers_503_with_retry_after(tmp_path: Path) -> None:
    capture = {"paused": True, "queue": {"max_records": 10, "block_timeout": "100ms"}}
    ten = orjson.dumps([{"log": f"r{i}"} for i in range(10)])
    async with harness(tmp_path, capture=capture) as h:
        assert (await h.post(ten))[0] == 201  # fills the queue; the exporter holds it
        status, text, headers = await h.post(b'[{"log": "one more"}]')
        assert status == 503
        assert "exporter queue full" in text
        assert int(headers["Retry-After"]) >= 1
        refused = metric_value(
            h.svc,
            "burnline_records_refused_total",
            {"component": RID, "signal": "logs", "reason": "exporter queue full"},
        )
        assert refused == 1
        assert h.errors("too_large") + h.errors("bad_shape") == 0  # backpressure is not a client error

        h.svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
        await wait_until(lambda: len(h.captured) == 10)
        assert (await h.post(b'[{"log": "one more"}]'))[0] == 201  # the client's retry
        await wait_until(lambda: len(h.captured) == 11)
        assert h.accepted() == 11


async def test_a_bad_client_does_not_affect_a_concurrent_good_one(tmp_path: Path) -> None:
    started, good_answered = asyncio.Event(), asyncio.Event()

    async def slow_bad_body() -> AsyncIterator[bytes]:
        yield b'[{"log": "partial"'
        started.set()
        # The rest of this body is held back until the good request has been answered: that proves
        # the good one is not queued behind it.
        await asyncio.wait_for(good_answered.wait(), 10)
        yield b", broken json"

    async with harness(tmp_path) as h:
        async with aiohttp.ClientSession() as other:
            bad = asyncio.create_task(
                other.post(h.url + "/bad", data=slow_bad_body(), headers={"Content-Type": "application/json"})
            )
            await asyncio.wait_for(started.wait(), 5)
            status, _, _ = await h.post(orjson.dumps([{"log": f"good {i}"} for i in range(3)]), "/good")
            assert status == 201
            assert not bad.done()
            good_answered.set()
            bad_response = await asyncio.wait_for(bad, 5)
            assert bad_response.status == 400
            bad_response.release()
        await wait_until(lambda: len(h.captured) == 3)
        assert [r.body for r in h.captured] == ["good 0", "good 1", "good 2"]
        assert h.errors("invalid_json") == 1

        # Many at once, good and bad interleaved: each gets its own answer, only good data lands.
        bodies = [orjson.dumps([{"log": f"c{i}"}]) if i % 2 else b"[{oops" for i in range(20)]
        results = await asyncio.gather(*(h.post(b) for b in bodies))
        assert [status for status, _, _ in results] == [201 if i % 2 else 400 for i in range(20)]
        await wait_until(lambda: len(h.captured) == 13)
        assert sorted(r.body for r in h.captured[3:]) == sorted(f"c{i}" for i in range(1, 20, 2))


# --- listener ------------------------------------------------------------------------------------


async def test_port_zero_and_connections_gauge(tmp_path: Path) -> None:
    async with harness(tmp_path, port=0) as h:
        receiver = h.svc.receivers[RID]
        assert receiver.port != 0  # type: ignore[attr-defined]
        assert receiver.ready()
        assert (await h.post(b'{"log": "x"}'))[0] == 201
        # The client session keeps its connection open.
        assert metric_value(h.svc, "burnline_receiver_connections", {"component": RID}) >= 1
    assert not receiver.ready()


async def test_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    async with harness(tmp_path, tls=tls) as h:
        url = h.url.replace("http://", "https://")
        async with h.session.post(url + "/secure", data=b'{"log": "tls"}', ssl=client_ssl) as resp:
            assert resp.status == 201
        await wait_until(lambda: len(h.captured) == 1)
        assert h.captured[0].body == "tls"


# --- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T0, T0_NS),
        (T0 * 1000, T0_NS),
        (T0 * 1_000_000 + 7, T0_NS + 7_000),
        (T0_NS + 9, T0_NS + 9),
        (T0 + 0.5, T0_NS + 500_000_000),
        ("1700000000.123456789", T0_NS + 123_456_789),
        ("1700000000", T0_NS),
        ("2023-11-14T22:13:20Z", T0_NS),
        ("2023-11-14T22:13:20.123456789Z", T0_NS + 123_456_789),
        ("2023-11-14T17:13:20-05:00", T0_NS),
        ("2023-11-14 22:13:20,5", T0_NS + 500_000_000),
        ("2023-13-14T22:13:20Z", None),
        ("2023-02-29T22:13:20Z", None),
        ("2016-12-31T23:59:60Z", 1_483_228_800 * 1_000_000_000),
        ("1969-12-31T23:59:59Z", None),
        ("not a date", None),
        (True, None),
        (-5, None),
        (float("nan"), None),
        (None, None),
        ({"sec": 1}, None),
    ],
)
def test_json_time_ns(value: Any, expected: int | None) -> None:
    assert json_time_ns(value) == expected


def test_sniff() -> None:
    assert sniff(b"  \n[{}]") == "json"
    assert sniff(b'{"a":1}') == "json"
    assert sniff(chunk([T0, {}])) == "msgpack"
    assert sniff(b"\xdc\x00\x02") == "msgpack"
    assert sniff(b"<xml/>") is None
    assert sniff(b"   ") is None
