"""End-to-end scenarios: burnline as a process on its own core, load and backends on the other.

For each scenario this starts an instant backend (bench/doubles.py) and burnline (`burnline run -c`
with a generated config) pinned to their cores, lets a load generator (bench/loadgen.py, its own
process, pre-encoded payloads) warm up, then measures a window: acknowledged records/s and MiB/s,
burnline's CPU-seconds per million records (from /proc), p50/p99 acknowledgement latency, and
burnline's peak RSS (VmHWM). Each scenario prints one table row; `--json FILE` writes them all.

A receiver acknowledges as soon as a batch is in the exporter's queue, so for as long as the queue
has room burnline can acknowledge faster than it delivers. After the window, the bench waits until
the queues are empty again and also reports e2e/CPU-s: the records acknowledged in the window per
CPU-second burnline spent from the window's start until all of them were delivered. That is what
one core sustains, and the figure RESULTS.md compares.

The floor is measured in the same run, on the same core: only decoding the same payloads and
encoding the bulk bodies, the least work a scenario must do. Every scenario is also reported as a
ratio of its records per CPU-second to its floor, which stays meaningful on a shared, noisy machine
where absolute numbers do not.

Run: .venv/bin/python bench/pipeline.py [--seconds 20] [--warmup 5] [--only forward-es,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgpack
import orjson
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import workloads  # noqa: E402

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cores() -> tuple[set[int], set[int]]:
    """(burnline's cores, everyone else's): the first allowed core for burnline, the rest for load."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return set(allowed), set(allowed)
    return {allowed[0]}, set(allowed[1:])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads (not of its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_http(url: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class Scenario:
    name: str
    description: str
    loadgen: str  # bench/loadgen.py kind
    receiver: Callable[[int], dict[str, Any]]  # port -> receivers section
    receiver_id: str
    signal: str
    backend: str  # bench/doubles.py kind
    exporter: Callable[[str], dict[str, Any]]  # backend address -> exporters section
    per_request: int
    floor: str  # which floor this scenario is compared with


def _es_exporter(address: str) -> dict[str, Any]:
    return {"elasticsearch": {"endpoints": [f"http://{address}"]}}


def _otlp_exporter(protocol: str) -> Callable[[str], dict[str, Any]]:
    def section(address: str) -> dict[str, Any]:
        if protocol == "grpc":
            return {"otlp/bench": {"endpoint": address, "protocol": "grpc", "insecure": True}}
        return {"otlp/bench": {"endpoint": f"http://{address}", "protocol": "http/protobuf"}}

    return section


SCENARIOS = [
    Scenario(
        "forward-es",
        "Forward (PackedForward, acks) -> normalize -> Elasticsearch, durable queue",
        "forward",
        lambda port: {"forward": {"endpoint": f"127.0.0.1:{port}"}},
        "forward",
        "logs",
        "es",
        _es_exporter,
        1000,
        "forward",
    ),
    Scenario(
        "http-json-es",
        "Fluent Bit HTTP (json) -> normalize -> Elasticsearch, durable queue",
        "http-json",
        lambda port: {"fluentbit_http": {"endpoint": f"127.0.0.1:{port}"}},
        "fluentbit_http",
        "logs",
        "es",
        _es_exporter,
        1000,
        "json",
    ),
    Scenario(
        "otlp-http-es",
        "OTLP/HTTP traces -> Elasticsearch, durable queue",
        "otlp-http",
        lambda port: {"otlp": {"http": {"endpoint": f"127.0.0.1:{port}"}, "grpc": None}},
        "otlp",
        "traces",
        "es",
        _es_exporter,
        500,
        "otlp",
    ),
    Scenario(
        "otlp-grpc-otlp",
        "OTLP/gRPC traces -> OTLP exporter (gRPC), durable queue",
        "otlp-grpc",
        lambda port: {"otlp": {"grpc": {"endpoint": f"127.0.0.1:{port}"}, "http": None}},
        "otlp",
        "traces",
        "otlp-grpc",
        _otlp_exporter("grpc"),
        500,
        "otlp",
    ),
    Scenario(
        "otlp-http-otlp",
        "OTLP/HTTP traces -> OTLP exporter (HTTP), durable queue",
        "otlp-http",
        lambda port: {"otlp": {"http": {"endpoint": f"127.0.0.1:{port}"}, "grpc": None}},
        "otlp",
        "traces",
        "otlp-http",
        _otlp_exporter("http"),
        500,
        "otlp",
    ),
]


# ---- floors ---------------------------------------------------------------------------------------


def _bulk_body(docs: list[dict[str, Any]]) -> bytes:
    lines = []
    for i, doc in enumerate(docs):
        lines.append(orjson.dumps({"create": {"_index": "logs-generic-default", "_id": str(i)}}))
        lines.append(orjson.dumps(doc))
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1)


def floor_forward(seconds: float) -> float:
    """Records/s: unpack PackedForward frames and their entries, encode gzip'd bulk bodies."""
    frames = workloads.forward_frames(workloads.log_records(16_000), 1000)
    done = 0
    end = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        for frame in frames:
            _tag, entries, _option = msgpack.unpackb(frame, raw=False)
            unpacker = msgpack.Unpacker(raw=False)
            unpacker.feed(entries)
            docs = [record for _time, record in unpacker]
            _bulk_body(docs)
            done += len(docs)
    return done / (time.perf_counter() - started)


def floor_json(seconds: float) -> float:
    bodies = workloads.json_bodies(workloads.log_records(16_000), 1000)
    done = 0
    end = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        for body in bodies:
            docs = orjson.loads(body)
            _bulk_body(docs)
            done += len(docs)
    return done / (time.perf_counter() - started)


def floor_otlp(seconds: float) -> float:
    """Spans/s: parse ExportTraceServiceRequests, encode one JSON document per span, gzip'd."""
    bodies = workloads.trace_requests(16, 500)
    done = 0
    end = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        for body in bodies:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            docs = [
                {
                    "trace.id": span.trace_id.hex(),
                    "span.id": span.span_id.hex(),
                    "name": span.name,
                    "start": span.start_time_unix_nano,
                    "end": span.end_time_unix_nano,
                }
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]
            _bulk_body(docs)
            done += len(docs)
    return done / (time.perf_counter() - started)


FLOORS: dict[str, Callable[[float], float]] = {
    "forward": floor_forward,
    "json": floor_json,
    "otlp": floor_otlp,
}


def measure_floor(kind: str, seconds: float, core: set[int]) -> float:
    """Runs a floor in a child process pinned to ``core`` (burnline's) and returns its rate."""
    code = (
        f"import sys, os; sys.path.insert(0, {str(HERE)!r}); os.sched_setaffinity(0, {sorted(core)!r}); "
        f"import pipeline; print(pipeline.FLOORS[{kind!r}]({seconds!r}))"
    )
    out = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, check=True, timeout=seconds + 120
    )
    return float(out.stdout.strip().splitlines()[-1])


# ---- one scenario ---------------------------------------------------------------------------------

DRAIN_TIMEOUT = 300.0


def queued_records(metrics_url: str) -> float:
    """The records in all of burnline's exporter queues (burnline_queue_records, summed)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    lines = text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("burnline_queue_records{"))


def drain(metrics_url: str, deadline: float) -> float | None:
    """Waits (bounded) until burnline's queues are empty; the time they were, or None."""
    while time.time() < deadline:
        if queued_records(metrics_url) == 0:
            return time.time()
        time.sleep(0.2)
    return None


@contextlib.contextmanager
def process(
    args: list[str], core: set[int], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
        )
    try:
        os.sched_setaffinity(proc.pid, core)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@dataclass
class Row:
    scenario: str
    records_per_s: float
    mib_per_s: float
    cpu_s_per_million: float
    records_per_cpu_s: float
    floor_per_s: float
    ratio_to_floor: float
    p50_ms: float | None
    p99_ms: float | None
    peak_rss_mib: float
    delivered_per_s: float
    # Records acknowledged in the window per CPU-second from the window's start until burnline's
    # queues were empty again: every acknowledged record also delivered. A receiver can acknowledge
    # faster than its exporter delivers for as long as the queue has room, so this, not
    # records_per_cpu_s, is what a core sustains. (Pessimistic by the backlog the window started with.)
    sustained_per_cpu_s: float
    sustained_ratio_to_floor: float
    drain_s: float
    refused: int
    errors: int
    loadgen_cpu_s: float


def run_scenario(
    s: Scenario, work: Path, *, seconds: float, warmup: float, connections: int, floor: float
) -> Row:
    burnline_core, other_cores = cores()
    backend_port, backend_stats, receiver_port, admin_port = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    )
    backend_address = f"127.0.0.1:{backend_port}"
    exporters = s.exporter(backend_address)
    config = {
        "receivers": s.receiver(receiver_port),
        "exporters": exporters,
        "service": {
            "data_dir": str(work / "data"),
            "log_level": "warning",
            "admin": {"endpoint": f"127.0.0.1:{admin_port}"},
            "pipelines": {s.signal: {"receivers": [s.receiver_id], "exporters": list(exporters)}},
        },
    }
    config_path = work / "burnline.yaml"
    config_path.write_text(yaml.safe_dump(config))
    stats_url = f"http://127.0.0.1:{backend_stats if s.backend == 'otlp-grpc' else backend_port}/_bench/stats"
    backend_args = [PYTHON, str(HERE / "doubles.py"), s.backend, "--port", str(backend_port)]
    if s.backend == "otlp-grpc":
        backend_args += ["--stats-port", str(backend_stats)]
    with (
        process(backend_args, other_cores, work / "backend.log"),
        process(
            [PYTHON, "-m", "collector", "run", "-c", str(config_path)], burnline_core, work / "burnline.log"
        ) as burnline,
    ):
        wait_http(stats_url)
        wait_http(f"http://127.0.0.1:{admin_port}/readyz")
        t0 = time.time() + warmup
        with (work / "loadgen.log").open("wb") as err:
            gen = subprocess.Popen(
                [PYTHON, str(HERE / "loadgen.py"), s.loadgen, f"127.0.0.1:{receiver_port}", "--t0", str(t0),
                 "--seconds", str(seconds), "--connections", str(connections),
                 "--per-request", str(s.per_request)],
                stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
            )  # fmt: skip
            os.sched_setaffinity(gen.pid, other_cores)
            time.sleep(max(0.0, t0 - time.time()))
            cpu0, delivered0 = cpu_seconds(burnline.pid), http_json(stats_url)["items"]
            time.sleep(max(0.0, t0 + seconds - time.time()))
            cpu1, delivered1 = cpu_seconds(burnline.pid), http_json(stats_url)["items"]
            out, _ = gen.communicate(timeout=180)
            drained_at = drain(f"http://127.0.0.1:{admin_port}/metrics", time.time() + DRAIN_TIMEOUT)
            cpu2 = cpu_seconds(burnline.pid)
        report = orjson.loads(out.splitlines()[-1])
        rss = peak_rss_mib(burnline.pid)
    items = report["items"]
    cpu = max(cpu1 - cpu0, 1e-9)
    per_cpu = items / cpu
    sustained = items / max(cpu2 - cpu0, 1e-9) if drained_at is not None else 0.0
    # The OTLP sinks count requests, not spans: each request carries per_request spans.
    delivered = delivered1 - delivered0
    if s.backend != "es":
        delivered *= s.per_request
    return Row(
        s.name,
        round(items / seconds, 1),
        round(report["bytes"] / seconds / 2**20, 2),
        round(cpu / items * 1e6, 2) if items else float("inf"),
        round(per_cpu, 1),
        round(floor, 1),
        round(per_cpu / floor, 4) if floor else 0.0,
        report["p50_ms"],
        report["p99_ms"],
        round(rss, 1),
        round(delivered / seconds, 1),
        round(sustained, 1),
        round(sustained / floor, 4) if floor else 0.0,
        round(drained_at - (t0 + seconds), 1) if drained_at is not None else float("nan"),
        report["refused"],
        report["errors"],
        report["cpu_seconds"],
    )


COLUMNS = [
    ("scenario", 16, "{}"),
    ("records_per_s", 11, "{:,.0f}"),
    ("mib_per_s", 7, "{:.2f}"),
    ("records_per_cpu_s", 12, "{:,.0f}"),
    ("cpu_s_per_million", 10, "{:.1f}"),
    ("floor_per_s", 11, "{:,.0f}"),
    ("ratio_to_floor", 8, "{:.1%}"),
    ("p50_ms", 8, "{}"),
    ("p99_ms", 8, "{}"),
    ("peak_rss_mib", 8, "{:.0f}"),
    ("delivered_per_s", 11, "{:,.0f}"),
    ("sustained_per_cpu_s", 12, "{:,.0f}"),
    ("sustained_ratio_to_floor", 8, "{:.1%}"),
    ("drain_s", 7, "{:.1f}"),
    ("refused", 8, "{}"),
    ("loadgen_cpu_s", 8, "{:.1f}"),
]
HEADERS = {
    "records_per_s": "rec/s",
    "mib_per_s": "MiB/s",
    "records_per_cpu_s": "rec/CPU-s",
    "cpu_s_per_million": "CPU-s/M",
    "floor_per_s": "floor/s",
    "ratio_to_floor": "floor%",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "peak_rss_mib": "RSS MiB",
    "delivered_per_s": "deliv/s",
    "sustained_per_cpu_s": "e2e/CPU-s",
    "sustained_ratio_to_floor": "e2e%",
    "drain_s": "drain s",
    "loadgen_cpu_s": "gen CPU",
}


def print_header() -> None:
    print("  ".join(HEADERS.get(name, name).rjust(width) for name, width, _ in COLUMNS), flush=True)


def print_row(row: Row) -> None:
    values = asdict(row)
    print(
        "  ".join(
            (fmt.format(values[name]) if values[name] is not None else "-").rjust(width)
            for name, width, fmt in COLUMNS
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per scenario")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--json", type=Path, help="write the rows (and the machine) here")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory (config, logs)")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    burnline_core, other = cores()
    print(f"burnline on core(s) {sorted(burnline_core)}, load and backends on {sorted(other)}; "
          f"{args.seconds:.0f} s windows after {args.warmup:.0f} s warm-up")  # fmt: skip
    print_header()
    rows = []
    for s in chosen:
        work = Path(tempfile.mkdtemp(prefix=f"bench-{s.name}-"))
        row = None
        # The floor right before its scenario, on the same core: on a shared machine the two see
        # about the same contention, so their ratio holds where absolute rates drift.
        floor = measure_floor(s.floor, min(args.seconds, 5.0), burnline_core)
        for attempt in (1, 2):  # a second try when a shared machine's port or process hiccups
            try:
                row = run_scenario(
                    s, work, seconds=args.seconds, warmup=args.warmup, connections=args.connections,
                    floor=floor,
                )  # fmt: skip
                break
            except Exception as exc:
                print(f"{s.name}: attempt {attempt} failed: {exc!r}", flush=True)
                traceback.print_exc()
        if row is None or not row.records_per_s:
            for log in sorted(work.glob("*.log")):
                print(f"--- {log}\n{log.read_text(errors='replace')[-2000:]}", flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        if row is not None:
            rows.append(row)
            print_row(row)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "cpus": os.cpu_count(),
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
