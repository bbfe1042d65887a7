"""Fuzz the network-facing decoders with a large budget, on demand, and check that memory stays flat.

1. Random inputs (raw bytes and mutated valid frames/bodies) through the Forward frame decoder, the
   Fluent Bit HTTP body decoder, the OTLP protobuf and JSON decoders, the remote_write decoder and
   the durable queue's batch decoder; prints inputs/s, the exceptions
   that were not the protocol's own error (must be 0) and the memory growth between the first and
   the last quarter of the run (tracemalloc; a leak shows as steady growth).
2. With --hypothesis N: the property tests of tests/receivers/test_fuzz_decoders.py with N examples each.

Run: .venv/bin/python bench/fuzz_decoders.py [--inputs 50000] [--hypothesis 5000]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cramjam
import msgpack
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.core.model import Batch, LogRecord, Signal
from collector.exporterhelper.batch_codec import CodecError
from collector.exporterhelper.batch_codec import decode as decode_queued
from collector.exporterhelper.batch_codec import encode as encode_queued
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

LIMIT = 1 << 20
OTLP: list[tuple[Any, Callable[..., Any]]] = [
    (ExportTraceServiceRequest, spans_from_proto),
    (ExportLogsServiceRequest, logs_from_proto),
    (ExportMetricsServiceRequest, metrics_from_proto),
]
CONFIG = FluentNormalizeConfig()


def otlp_input(data: bytes) -> None:
    for message_class, convert in OTLP:
        for parse in (parse_proto_request, parse_json_request):
            try:
                request = parse(data, message_class)
            except InvalidRequest:
                continue
            convert(request, Rejections())


def remote_write_input(data: bytes) -> None:
    for body in (data, bytes(cramjam.snappy.compress_raw(data))):
        try:
            request = parse_write_request(decompress(body, LIMIT))
        except HTTPRejected:
            continue
        Converter(FamilyTypes(100), infer_types=True).convert(request)


def forward_input(data: bytes) -> None:
    stream = FrameStream(max_frame_size=LIMIT)
    stream.feed(data)
    while (got := stream.next_frame()) is not None:
        message = decode_frame(got[0], stream, LIMIT, now=1)
        normalize_fluent(message.tag, message.entries, CONFIG, 1)


def http_input(data: bytes) -> None:
    encoding = "gzip" if data[:2] == b"\x1f\x8b" else "identity"
    for declared in (None, "json", "msgpack"):
        try:
            entries = decode_body(
                data, encoding=encoding, declared=declared, time_key="date", max_inflated=LIMIT
            )
        except Rejected:
            continue
        normalize_fluent("t", [(t or 1, r) for t, r in entries], CONFIG, 1)


SEEDS = [
    msgpack.packb(
        ["app", 1700000000, {"log": "hello", "kubernetes": {"pod_name": "p", "labels": {"a": "b"}}}]
    ),
    msgpack.packb(["app", [[1700000000, {"log": '{"level":"error","msg":"x"}'}]], {"chunk": "abc"}]),
    msgpack.packb(["app", msgpack.packb([1, {"log": "x"}]) * 3, {"compressed": "text"}]),
    msgpack.packb(["app", gzip.compress(msgpack.packb([1, {"log": "x"}])), {"compressed": "gzip"}]),
    b'[{"date": 1700000000.5, "log": "x"}]',
    b'{"date": "2024-01-01T00:00:00Z", "message": "x"}\n{"log": "y"}',
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.4 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op < 0.6 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op < 0.8:
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        else:
            buf += rng.choice(SEEDS)
    return bytes(buf)


DECODERS: list[tuple[Callable[[bytes], Any], type[Exception]]] = [
    (forward_input, ProtocolError),
    (http_input, Rejected),
    (otlp_input, InvalidRequest),
    (remote_write_input, HTTPRejected),
    (decode_queued, CodecError),
]


def run_random(inputs: int, seed: int) -> None:
    rng = random.Random(seed)
    queued = encode_queued(
        Batch(Signal.LOGS, [LogRecord(time_unix_nano=1, body="x", attributes={"a": [1]})], 1)
    )
    unexpected: dict[str, int] = {}
    tracemalloc.start()
    marks = []
    started = time.perf_counter()
    for i in range(inputs):
        data = rng.randbytes(rng.randint(0, 300)) if i % 3 == 0 else mutate(rng, rng.choice([*SEEDS, queued]))
        for fn, expected in (
            (forward_input, ProtocolError),
            (http_input, Rejected),
            (decode_queued, CodecError),
        ):
            try:
                fn(data)
            except expected:
                pass
            except Exception as exc:  # the finding this harness exists for
                key = f"{fn.__name__}: {type(exc).__name__}: {exc}"[:160]
                unexpected[key] = unexpected.get(key, 0) + 1
        if i in (inputs // 4, inputs - 1):
            gc.collect()
            marks.append(tracemalloc.get_traced_memory()[0])
    elapsed = time.perf_counter() - started
    tracemalloc.stop()
    rate = inputs / elapsed
    print(f"random inputs: {inputs} in {elapsed:.1f}s ({rate:,.0f}/s through {len(DECODERS)} decoders)")
    print(f"unexpected exceptions: {sum(unexpected.values())}")
    for key, count in sorted(unexpected.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {count:>6}  {key}")
    growth = (marks[1] - marks[0]) / 1024
    print(f"traced memory after 1/4: {marks[0] / 1024:.0f} KiB; at the end: {marks[1] / 1024:.0f} KiB")
    print(f"growth over the last 3/4: {growth:+.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hypothesis", type=int, default=0, help="examples per property test (0: skip)")
    args = parser.parse_args()
    run_random(args.inputs, args.seed)
    if args.hypothesis:
        env = {**os.environ, "BURNLINE_FUZZ_EXAMPLES": str(args.hypothesis)}
        test = Path(__file__).resolve().parent.parent / "tests" / "receivers" / "test_fuzz_decoders.py"
        sys.exit(
            subprocess.call(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)], env=env
            )
        )


if __name__ == "__main__":
    main()
