"""Property-based fuzzing of the decoders that face the network.

Every decoder either returns data or raises its protocol's own error, never anything else; and a
server fed garbage keeps serving other clients. ``BURNLINE_FUZZ_EXAMPLES`` raises the budget
(bench/fuzz_decoders.py runs it large, on demand).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import struct
from pathlib import Path
from typing import Any

import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.exporterhelper.batch_codec import CodecError
from collector.exporterhelper.batch_codec import decode as decode_queued
from collector.httpserver.answers import Rejected
from collector.httpserver.answers import Rejected as HTTPRejected
from collector.httpserver.body import decompress_snappy as decompress
from collector.normalize.fluent import normalize_fluent
from collector.normalize.fluent_config import FluentNormalizeConfig
from collector.normalize.otlp import (
    InvalidRequest,
    Rejections,
    logs_from_proto,
    metrics_from_proto,
    parse_json_request,
    parse_proto_request,
    spans_from_proto,
)
from collector.receivers.fluentbit_http.decode import decode_body
from collector.receivers.forward.protocol import FrameStream, ProtocolError, decode_frame
from collector.receivers.remote_write.convert import Converter, parse_write_request
from collector.receivers.remote_write.families import FamilyTypes
from tests.forward_frames import ForwardClient, event_time, forward
from tests.support import free_port, running_service

EXAMPLES = int(os.environ.get("BURNLINE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMIT = 1 << 20

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(
        lambda s, n: msgpack.ExtType(0, struct.pack(">II", s, n)),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    )
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12))
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.integers(-(2**63), 2**63 - 1), inner, max_size=5)
    ),
    max_leaves=25,
)
# Frames shaped like the four modes, with random contents, so that the fuzzer gets past the first check.
frames = st.one_of(
    values,
    st.tuples(st.text(max_size=10), values, values).map(list),
    st.tuples(st.text(max_size=10), st.lists(st.tuples(values, values).map(list), max_size=5), values).map(
        list
    ),
    st.tuples(
        st.text(max_size=10),
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["chunk", "size", "compressed", "fluent_signal"]), values, max_size=3
        ),
    ).map(list),
)


def decode_all(data: bytes) -> list[Any]:
    stream = FrameStream(max_frame_size=LIMIT)
    stream.feed(data)
    messages = []
    while (got := stream.next_frame()) is not None:
        message = decode_frame(got[0], stream, LIMIT, now=1)
        messages.append(message)
        normalize_fluent(message.tag, message.entries, FluentNormalizeConfig(), 1)
    return messages


@FUZZ
@given(st.binary(max_size=2000))
def test_forward_arbitrary_bytes(data: bytes) -> None:
    try:
        decode_all(data)
    except ProtocolError:
        pass


@FUZZ
@given(frames)
def test_forward_structured_frames(frame: Any) -> None:
    try:
        decode_all(msgpack.packb(frame, use_bin_type=True))
    except ProtocolError:
        pass


@FUZZ
@given(st.lists(st.tuples(values, values).map(list), max_size=8), st.booleans())
def test_forward_packed_entries(entries: list[Any], compress: bool) -> None:
    packed = b"".join(msgpack.packb(e, use_bin_type=True) for e in entries)
    options: dict[str, Any] = {"compressed": "gzip"} if compress else {}
    frame = ["tag", gzip.compress(packed) if compress else packed, options]
    try:
        decode_all(msgpack.packb(frame, use_bin_type=True))
    except ProtocolError:
        pass


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=2000),
        json_like.map(orjson.dumps),
        st.lists(st.tuples(values, values).map(list), max_size=5).map(
            lambda es: b"".join(msgpack.packb(e, use_bin_type=True) for e in es)
        ),
    ),
    st.sampled_from(["identity", "gzip", "deflate"]),
    st.sampled_from([None, "json", "msgpack"]),
)
def test_fluentbit_http_bodies(body: bytes, encoding: str, declared: str | None) -> None:
    if encoding == "gzip" and body[:2] != b"\x1f\x8b":
        body = gzip.compress(body) if len(body) % 2 else body  # valid and invalid gzip both
    try:
        entries = decode_body(body, encoding=encoding, declared=declared, time_key="date", max_inflated=LIMIT)
    except Rejected as exc:
        assert 400 <= exc.status < 500
        return
    normalize_fluent("tag", [(t or 1, r) for t, r in entries], FluentNormalizeConfig(), 1)


OTLP = [
    (ExportTraceServiceRequest, spans_from_proto),
    (ExportLogsServiceRequest, logs_from_proto),
    (ExportMetricsServiceRequest, metrics_from_proto),
]


def otlp_decode(body: bytes, as_json: bool) -> None:
    for message_class, convert in OTLP:
        try:
            if as_json:
                request = parse_json_request(body, message_class)
            else:
                request = parse_proto_request(body, message_class)
        except InvalidRequest:
            continue
        convert(request, Rejections())  # type: ignore[operator]


@FUZZ
@given(st.binary(max_size=2000))
def test_otlp_protobuf_bytes(data: bytes) -> None:
    otlp_decode(data, as_json=False)


SPAN_KEYS = [
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "startTimeUnixNano",
    "attributes",
    "events",
    "links",
    "status",
    "flags",
]
json_spans = st.lists(st.dictionaries(st.sampled_from(SPAN_KEYS), json_like, max_size=6), max_size=3)
json_scopes = st.lists(st.fixed_dictionaries({"spans": json_spans}), max_size=2)
json_traces = st.fixed_dictionaries(
    {"resourceSpans": st.lists(st.fixed_dictionaries({"scopeSpans": json_scopes}), max_size=2)}
)


@FUZZ
@given(st.one_of(st.binary(max_size=1000), json_like.map(orjson.dumps), json_traces.map(orjson.dumps)))
def test_otlp_json_bodies(data: bytes) -> None:
    otlp_decode(data, as_json=True)


@FUZZ
@given(st.binary(max_size=2000), st.booleans())
def test_remote_write_bodies(data: bytes, compress: bool) -> None:
    import cramjam

    body = bytes(cramjam.snappy.compress_raw(data)) if compress else data
    try:
        request = parse_write_request(decompress(body, LIMIT))
    except HTTPRejected as exc:
        assert exc.status in (400, 413)
        return
    Converter(FamilyTypes(100), infer_types=True).convert(request)


@FUZZ
@given(st.binary(max_size=500))
def test_queued_batch_decoder(data: bytes) -> None:
    try:
        decode_queued(data)
    except CodecError:
        pass


async def test_garbage_connections_never_disturb_a_healthy_client(tmp_path: Path) -> None:
    """Many connections of random bytes, interleaved with a client whose every chunk must be acked."""
    import random

    rng = random.Random(1234)
    port = free_port()
    config = {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{port}", "max_frame_size": "64KiB"}},
        "exporters": {"capture": {}},
        "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["capture"]}}},
    }
    async with running_service(config, str(tmp_path)) as svc:
        healthy = await ForwardClient.connect(port)
        for i in range(min(EXAMPLES, 300)):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(rng.randbytes(rng.randint(1, 4000)))
            await writer.drain()
            writer.close()
            await healthy.send(forward("ok", [[event_time(1), {"log": f"n{i}"}]], {"chunk": f"c{i}"}))
            assert await healthy.receive(timeout=10) == {"ack": f"c{i}"}
        await healthy.close()
        await svc.senders["capture"].queue.join()
        assert len(svc.exporters["capture"].items) == min(EXAMPLES, 300)  # type: ignore[attr-defined]
