"""Each stage of a path's work per record, in one process on one core: what the pipeline's code
costs without the network, the event loop, SQLite or a backend.

bench/pipeline.py measures a path end to end, where the machine's noise is ±20 % and a stage's
share is read from a profile. This times the stages themselves, on the same payloads
(bench/workloads.py), with CPU time (time.process_time), several rounds, the fastest reported
(the least disturbed) beside the median:

- forward-es: a PackedForward frame cut and decoded (FrameStream, decode_frame), its entries
  normalized (normalize_fluent), the batch encoded for the durable queue (batch_codec.encode),
  the Elasticsearch bulk items encoded (encode_request), and everything it made freed;
- http-json-es: a Fluent Bit HTTP json body decoded (decode_body) and normalized, then as above;
- otlp-es: an OTLP/HTTP protobuf request of 500 spans decoded (items_from_request), then as above;
  its batch keeps the request (``Batch.wire``), which the durable queue stores as it came.

The sum is the least a core spends on a record on that path. The end-to-end figure of
bench/pipeline.py is higher: on the compiled code a Forward record took 28-29 us end to end against
16-25 here: the stages a tenth to a quarter longer than here, and the rest (sockets, acks, the queue's
SQLite thread, the bulk round trip, the loop) about a third of the whole (bench/RESULTS.md, "Every
scenario on the code of `83194fa`").

Run: taskset -c 0 .venv/bin/python bench/stages.py [--rounds 7] [--only forward-es,...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
import workloads  # noqa: E402

from collector.core.gc_tuning import tune_for_streaming  # noqa: E402
from collector.core.malloc_tuning import tune_allocator  # noqa: E402
from collector.core.model import Batch, Signal  # noqa: E402
from collector.exporterhelper import batch_codec  # noqa: E402
from collector.normalize.fluent import normalize_fluent  # noqa: E402
from collector.normalize.fluent_config import FluentNormalizeConfig  # noqa: E402
from collector.normalize.otlp import items_from_request  # noqa: E402
from collector.normalize.otlp_values import Rejections  # noqa: E402
from collector.receivers.fluentbit_http.decode import decode_body  # noqa: E402
from collector.receivers.forward.protocol import FrameStream, decode_frame  # noqa: E402
from exporters.elasticsearch.bulk import encode_request  # noqa: E402
from exporters.elasticsearch.config import DataStreamConfig  # noqa: E402

RECORDS = 20_000
MAX_FRAME = 64 << 20
NORMALIZE = FluentNormalizeConfig()
DATA_STREAM = DataStreamConfig()

# A path: its payloads, how one payload goes through the stages before the queue (each a
# (name, function of the previous stage's output) pair), and whether its batch keeps the payload as
# its received request (Batch.wire); the queue and bulk stages follow for all.
Stage = tuple[str, Callable[[Any], Any]]


def _forward_frame(frame: bytes) -> list[Any]:
    stream = FrameStream(MAX_FRAME)
    stream.feed(frame)
    found = stream.next_frame()
    assert found is not None
    now = time.time_ns()
    message = decode_frame(found[0], stream, MAX_FRAME, now)
    return [message, now]


def _forward_normalize(decoded: list[Any]) -> list[Any]:
    message, now = decoded
    return normalize_fluent(message.tag, message.entries, NORMALIZE, now, message.rejected)


def _json_body(body: bytes) -> list[Any]:
    now = time.time_ns()
    entries = decode_body(body, encoding="identity", declared="json", time_key="date", max_inflated=MAX_FRAME)
    return [entries, now]


def _json_normalize(decoded: list[Any]) -> list[Any]:
    entries, now = decoded
    timed = ((now if t is None else t, record) for t, record in entries)
    return normalize_fluent("http.bench", timed, NORMALIZE, now, [])


def _otlp_request(body: bytes) -> list[Any]:
    return items_from_request(Signal.TRACES, body, Rejections())


PATHS: dict[str, tuple[Callable[[], list[bytes]], Signal, list[Stage], bool]] = {
    "forward-es": (
        lambda: workloads.forward_frames(workloads.log_records(RECORDS), 1000),
        Signal.LOGS,
        [("decode", _forward_frame), ("normalize", _forward_normalize)],
        False,
    ),
    "http-json-es": (
        lambda: workloads.json_bodies(workloads.log_records(RECORDS), 1000),
        Signal.LOGS,
        [("decode", _json_body), ("normalize", _json_normalize)],
        False,
    ),
    "otlp-es": (
        lambda: workloads.trace_requests(RECORDS // 500, 500),
        Signal.TRACES,
        [("decode", _otlp_request)],
        True,
    ),
}


def one_round(
    payloads: list[bytes], signal: Signal, stages: list[Stage], wire: bool
) -> tuple[dict[str, float], int]:
    spent: dict[str, float] = {name: 0.0 for name, _ in stages}
    spent["queue row"] = spent["bulk items"] = spent["freeing"] = 0.0
    records = 0
    for payload in payloads:
        made: list[Any] = []  # every stage's output, freed at the end (and timed: it is work too)
        value: Any = payload
        for name, stage in stages:
            t = time.process_time()
            value = stage(value)
            spent[name] += time.process_time() - t
            made.append(value)
        t = time.process_time()
        made.append(batch_codec.encode(Batch(signal, value, len(payload), payload if wire else None)))
        spent["queue row"] += time.process_time() - t
        t = time.process_time()
        made.append(encode_request(signal, value, DATA_STREAM))
        spent["bulk items"] += time.process_time() - t
        records += len(value)
        del value
        t = time.process_time()
        made.clear()
        spent["freeing"] += time.process_time() - t
    return spent, records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default=",".join(PATHS))
    args = parser.parse_args()
    tune_allocator()  # as the service does at start (collector/core/malloc_tuning.py)
    print(f"{'path':<14} {'stage':<11} {'us/rec min':>10} {'median':>8}")
    for name in args.only.split(","):
        make, signal, stages, wire = PATHS[name]
        payloads = make()
        # The collector as the service runs it (collector/core/gc_tuning.py): what exists now frozen
        # (the last path's payloads unfrozen and collected first), a young collection every
        # YOUNG_THRESHOLD allocations. At CPython's default of 700 the collections took about 7 % of
        # this script's samples (py-spy --native), which the service never pays.
        tune_for_streaming()
        rounds = [one_round(payloads, signal, stages, wire) for _ in range(args.rounds)]
        records = rounds[0][1]
        for stage in rounds[0][0]:
            times = [spent[stage] / records * 1e6 for spent, _ in rounds]
            print(f"{name:<14} {stage:<11} {min(times):>10.2f} {statistics.median(times):>8.2f}")
        totals = [sum(spent.values()) / records * 1e6 for spent, _ in rounds]
        print(
            f"{name:<14} {'total':<11} {min(totals):>10.2f} {statistics.median(totals):>8.2f}"
            f"   {1e6 / min(totals):,.0f} records per CPU-second at best",
            flush=True,
        )


if __name__ == "__main__":
    main()
