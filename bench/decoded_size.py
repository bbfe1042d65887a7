"""What a queued batch takes in memory once decoded, against its received size and its queue row.

The durable queue keeps batches decoded in memory up to ``queue.memory_bytes`` and has to know what
a batch takes there without measuring it. This prints, for the bench's own workloads (a Forward
frame of Kubernetes log records, a remote-write request, an OTLP/HTTP trace request), the batch's
received size (what the receiver sets as ``size_bytes``), its queue row (batch_codec), and the memory
its decode allocates (tracemalloc), with the ratios. DECODED_PER_ROW_BYTE in
collector/exporterhelper/durable_queue.py is taken from the last column.

Run: .venv/bin/python bench/decoded_size.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cramjam
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.core.model import Batch, Signal
from collector.exporterhelper import batch_codec
from collector.exporterhelper.durable_queue import decoded_size
from collector.normalize.fluent import normalize_fluent
from collector.normalize.fluent_config import FluentNormalizeConfig
from collector.normalize.otlp import spans_from_proto
from collector.receivers.forward.protocol import FrameStream, decode_frame
from collector.receivers.remote_write.convert import Converter, parse_write_request
from collector.receivers.remote_write.families import FamilyTypes

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import workloads

from tests.support import decode_measured


def forward_batch() -> Batch:
    frame = workloads.forward_frames(workloads.log_records(1000), 1000)[0]
    stream = FrameStream(len(frame) + 1)
    stream.feed(frame)
    got = stream.next_frame()
    assert got is not None
    message = decode_frame(got[0], stream, 64 * 1024 * 1024, time.time_ns())
    records = normalize_fluent(message.tag, message.entries, FluentNormalizeConfig(), time.time_ns())
    return Batch(Signal.LOGS, records, len(frame))


def remote_write_batch() -> Batch:
    body = workloads.remote_write_requests(1, 2000)[0]
    data = bytes(cramjam.snappy.decompress_raw(body))
    conversion = Converter(FamilyTypes(1000), infer_types=True).convert(parse_write_request(data))
    return Batch(Signal.METRICS, conversion.points, len(data))  # the receiver's size: decompressed


def spans_batch() -> Batch:
    body = workloads.trace_requests(1, 500)[0]
    spans = spans_from_proto(ExportTraceServiceRequest.FromString(body))
    return Batch(Signal.TRACES, spans, len(body))


def main() -> None:
    print(
        f"{'batch':>34} {'records':>8} {'received':>10} {'row':>10} {'decoded':>10}"
        f" {'dec/recv':>9} {'dec/row':>8} {'estimate/dec':>13}"
    )
    for name, make in (
        ("Forward frame, 1,000 log records", forward_batch),
        ("remote-write, 2,000 samples", remote_write_batch),
        ("OTLP/HTTP, 500 spans", spans_batch),
    ):
        batch = make()
        row = batch_codec.encode(batch)
        _, held = decode_measured(row)
        print(
            f"{name:>34} {len(batch):>8,} {batch.size_bytes:>10,} {len(row):>10,} {held:>10,}"
            f" {held / batch.size_bytes:>9.2f} {held / len(row):>8.2f} {decoded_size(len(row)) / held:>13.2f}"
        )


if __name__ == "__main__":
    main()
