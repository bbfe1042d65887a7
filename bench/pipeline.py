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
one core sustains, and the figure RESULTS.md compares. It is charged with the backlog the warm-up
left, so each row's "whole run" line also gives every record accepted in the run per CPU-second
burnline spent from ready to drained, which carries no backlog.

The floor is measured in the same run, on the same core: only decoding the same payloads and
encoding the bulk bodies with all they carry (OTLP in and out: parsing the requests and gzipping
them as received, which is what burnline sends on), in a process whose allocator and garbage
collector are set as burnline sets its own: the least work a scenario must do. Every scenario is
also reported as a ratio of its records per CPU-second to its floor, which stays meaningful on a
shared, noisy machine where absolute numbers do not.

Metrics scenarios: `remote_write-prom` (remote-write requests in, the pull exporter out: delivered
is burnline_records_exported_total of the exporter, and after the drain the bench checks every
series is on the exporter's /metrics) and `scrape-rw` (1,000 static targets x 500 samples served
by a double on the other core, out through the remote-write exporter to a sink in the same double:
rec/s is samples scraped, e2e/CPU-s samples delivered in the window per CPU-second in the window,
as scraping never stops and there is no drain). `forward-es-slo10` and `forward-es-slo10k` are
forward-es with 10 and 10,000 log SLOs in the config (the first ten match the traffic).

`--overload` runs the chosen scenarios with ten times the connections (`--overload-factor`), no
pacing, default limits, and sets the load generator's refusals and its whole-run sent/acked counts
beside burnline's own burnline_records_refused_total and burnline_records_accepted_total.
`--workers N` writes `service.workers: N` into the config (not written without the flag) and pins
burnline to N cores when there are more. burnline's CPU and peak RSS are always summed over its
process tree (a supervisor and its worker children).

Run: .venv/bin/python bench/pipeline.py [--seconds 20] [--warmup 5] [--only forward-es,...] [--json out.json]
       [--overload [--overload-factor 10]] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
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

import cramjam
import msgpack
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from collector.core.gzip_body import gzip_compress
from collector.normalize.otlp_raw_attributes import RawExportTraceServiceRequest
from collector.normalize.otlp_values import attributes
from collector.normalize.raw_key_values import raw_attributes
from collector.prompb import remote_pb2, types_pb2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))
import workloads  # noqa: E402

# Ports below the kernel's ephemeral range: the scrape-targets double binds a thousand ports of that
# range, and a port picked there by binding port 0 could be taken again before burnline binds it.
from tests.support import free_port  # noqa: E402

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cores(workers: int | None = None) -> tuple[set[int], set[int]]:
    """(burnline's cores, everyone else's): the first allowed core (the first N with ``workers``) for
    burnline, the rest for load; when there are no more cores than that, everyone shares them all."""
    allowed = sorted(os.sched_getaffinity(0))
    n = workers or 1
    if len(allowed) <= n:
        return set(allowed), set(allowed)
    return set(allowed[:n]), set(allowed[n:])


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat from the field after the command name (so index 1 is the ppid)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class ProcessTree:
    """burnline's process and its descendants (a supervisor and its worker children), found by
    walking /proc on each sample, since workers can restart under new pids.

    cpu_seconds() sums user + system time of every process in the tree plus the time of its
    children that exited and were waited for (cutime + cstime): when a worker dies, its time moves
    into its parent's cutime, so the sum keeps counting it and the difference of two samples is the
    tree's CPU between them. (A child that died unwaited between two samples loses its last slice.)
    Without children it is the one process' CPU."""

    def __init__(self, root: int) -> None:
        self.root = root

    def pids(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue
        tree, todo = [], [self.root]
        while todo and len(tree) < 10_000:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(parents.get(pid, ()))
        return tree

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = _stat(pid)
            except OSError:
                continue  # gone since the walk: its time is in its parent's cutime once waited for
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
        return total / CLK_TCK

    def peak_rss_mib(self) -> float:
        """The sum of each living process' peak RSS (VmHWM): an upper bound of the tree's peak."""
        total = 0.0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        return total

    def count(self) -> int:
        return len(self.pids())


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
    slos: int = 0  # log SLOs in the config (bench/pipeline.py log_slos)
    # Where delivery is counted: the backend double's stats, or (a pull exporter, which has no
    # backend) burnline_records_exported_total of the exporter on burnline's admin /metrics.
    delivered_from: str = "backend"


SCRAPE_TARGETS = 1000
SCRAPE_INTERVAL = 10.0
RW_REQUESTS = 16  # distinct remote-write requests the load generator cycles through
RW_SAMPLES = 2000  # samples a request: Prometheus' default max_samples_per_send


def _es_exporter(address: str) -> dict[str, Any]:
    return {"elasticsearch": {"endpoints": [f"http://{address}"]}}


def _prometheus_exporter(address: str) -> dict[str, Any]:
    return {"prometheus": {"endpoint": address}}


def _remote_write_exporter(address: str) -> dict[str, Any]:
    return {"prometheus_remote_write": {"endpoint": f"http://{address}/api/v1/write"}}


def _forward_receiver(port: int) -> dict[str, Any]:
    return {"forward": {"endpoint": f"127.0.0.1:{port}"}}


def log_slos(count: int) -> list[dict[str, Any]]:
    """``count`` log SLOs. The first ten watch the five services the Forward records come from (errors
    and warnings as bad events, so counting really happens); the rest watch 1,000 other services and
    never match, as in bench/slo.py."""
    out = []
    for i in range(count):
        if i < 10:
            service = workloads.SERVICES[i // 2]
            bad = {"severity": ">=error" if i % 2 == 0 else ">=warn"}
        else:
            service, bad = f"other-{i % 1000}", {"severity": ">=error"}
        sli = {"logs": {"match": {"service.name": service, "k8s.namespace.name": "shop"}, "bad": bad}}
        out.append({"name": f"slo-{i}", "service": service, "objective": 99.9, "sli": sli})
    return out


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
        "otlp-wire",
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
        "otlp-wire",
    ),
    Scenario(
        "remote_write-prom",
        "Prometheus remote_write (snappy protobuf, 2,000 samples a request) -> prometheus (pull) exporter",
        "remote-write",
        lambda port: {"remote_write": {"endpoint": f"127.0.0.1:{port}"}},
        "remote_write",
        "metrics",
        "none",
        _prometheus_exporter,
        RW_SAMPLES,
        "remote_write",
        delivered_from="exported",
    ),
    Scenario(
        # Into the remote-write exporter, not the pull one: 1,000 x 500 series are over the pull
        # exporter's default max_series (200,000), and a push backend counts delivery as it happens.
        "scrape-rw",
        "prometheus_scrape, 1,000 static targets x 500 samples every 10 s -> prometheus_remote_write",
        "",
        lambda port: {},  # built from the target double's ports (run_scenario)
        "prometheus_scrape",
        "metrics",
        "scrape-targets",
        _remote_write_exporter,
        workloads.SCRAPE_SAMPLES,
        "scrape",
    ),
    Scenario(
        "forward-es-slo10",
        "forward-es with 10 log SLOs (all matching the traffic)",
        "forward",
        _forward_receiver,
        "forward",
        "logs",
        "es",
        _es_exporter,
        1000,
        "forward",
        slos=10,
    ),
    Scenario(
        "forward-es-slo10k",
        "forward-es with 10,000 log SLOs (10 matching the traffic, 9,990 on other services)",
        "forward",
        _forward_receiver,
        "forward",
        "logs",
        "es",
        _es_exporter,
        1000,
        "forward",
        slos=10_000,
    ),
]


# ---- floors ---------------------------------------------------------------------------------------


def _bulk_body(docs: list[dict[str, Any]]) -> bytes:
    lines = []
    for i, doc in enumerate(docs):
        lines.append(orjson.dumps({"create": {"_index": "logs-generic-default", "_id": str(i)}}))
        lines.append(orjson.dumps(doc))
    # The compressor burnline itself uses (ISA-L at level 1): the least work includes the best
    # library available for it.
    return gzip_compress(b"\n".join(lines) + b"\n", 1)


def _rate(seconds: float, payloads: list[Any], work: Callable[[Any], int]) -> float:
    """Items a second: ``work`` (which answers how many items a payload held) over ``payloads``, again
    and again, for ``seconds``."""
    done = 0
    end = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        for payload in payloads:
            done += work(payload)
    return done / (time.perf_counter() - started)


def floor_forward(seconds: float) -> float:
    """Records/s: unpack PackedForward frames and their entries, encode gzip'd bulk bodies."""
    frames = workloads.forward_frames(workloads.log_records(16_000), 1000)

    def work(frame: Any) -> int:
        _tag, entries, _option = msgpack.unpackb(frame, raw=False)
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(entries)
        docs = [record for _time, record in unpacker]
        _bulk_body(docs)
        return len(docs)

    return _rate(seconds, frames, work)


def floor_json(seconds: float) -> float:
    bodies = workloads.json_bodies(workloads.log_records(16_000), 1000)

    def work(body: Any) -> int:
        docs = orjson.loads(body)
        _bulk_body(docs)
        return len(docs)

    return _rate(seconds, bodies, work)


def _event(event: Any) -> dict[str, Any]:
    return {"time": event.time_unix_nano, "name": event.name, "attributes": attributes(event.attributes)}


def floor_otlp(seconds: float) -> float:
    """Spans/s: parse ExportTraceServiceRequests with upb, encode one JSON document per span holding
    every field the span, its scope and its resource carry (what an Elasticsearch document of the
    span must hold; the resource's and the scope's fields read once per group), gzip'd. Attributes
    are read as burnline reads them, the fastest ways known here: a span's from the request's twin
    that keeps them serialized, by the compiled ``raw_attributes``; the others by ``attributes``.

    Until the night of 7 December 2026 this wrote five fields a span (ids, name, start, end), a
    fraction of what burnline must deliver, while the log floors encode each whole record."""
    bodies = workloads.trace_requests(16, 500)

    def work(body: Any) -> int:
        request: Any = RawExportTraceServiceRequest.FromString(body)
        docs = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                scope: dict[str, Any] = {"name": ss.scope.name, "version": ss.scope.version}
                if ss.scope.attributes:
                    scope["attributes"] = attributes(ss.scope.attributes)
                for span in ss.spans:
                    status = span.status
                    doc = {
                        "trace.id": span.trace_id.hex(),
                        "span.id": span.span_id.hex(),
                        "parent.id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "status": {"code": status.code, "message": status.message},
                        "attributes": raw_attributes(span.attributes),
                        "scope": scope,
                        "resource": resource,
                    }
                    if span.events:
                        doc["events"] = [_event(event) for event in span.events]
                    if span.links:
                        doc["links"] = [
                            {"trace.id": k.trace_id.hex(), "span.id": k.span_id.hex()} for k in span.links
                        ]
                    docs.append(doc)
        _bulk_body(docs)
        return len(docs)

    return _rate(seconds, bodies, work)


def floor_otlp_wire(seconds: float) -> float:
    """Spans/s for OTLP in and OTLP out: parse each ExportTraceServiceRequest with upb (to check and
    count its spans) and gzip the request as received, which is what burnline sends on (``Batch.wire``).
    Parsed as burnline parses it, as the twin that leaves span attributes serialized (about 2.5 times
    cheaper to parse than the request with its KeyValue messages).

    Until the night of 7 December 2026 the OTLP -> OTLP scenarios were compared with the
    JSON-encoding floor above, work that path never does."""
    bodies = workloads.trace_requests(16, 500)

    def work(body: Any) -> int:
        request: Any = RawExportTraceServiceRequest.FromString(body)
        gzip_compress(body, 1)
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)

    return _rate(seconds, bodies, work)


def floor_remote_write(seconds: float) -> float:
    """Samples/s: snappy-decode and parse the same WriteRequests, render each series as an exposition
    line (what the pull exporter serves)."""
    bodies = workloads.remote_write_requests(RW_REQUESTS, RW_SAMPLES)

    def work(body: Any) -> int:
        request = remote_pb2.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        lines = []
        for ts in request.timeseries:
            name = ""
            labels = []
            for label in ts.labels:
                if label.name == "__name__":
                    name = label.value
                else:
                    labels.append(f'{label.name}="{label.value}"')
            for sample in ts.samples:
                lines.append(f"{name}{{{','.join(labels)}}} {sample.value!r}")
        "\n".join(lines).encode()
        return len(lines)

    return _rate(seconds, bodies, work)


def floor_scrape(seconds: float) -> float:
    """Samples/s: gunzip and parse the same expositions with prometheus-client's parser (burnline's),
    encode the samples as a snappy remote-write request."""
    bodies = [gzip.compress(workloads.exposition(v), 1) for v in range(8)]
    now_ms = int(time.time() * 1000)

    def work(body: Any) -> int:
        request = remote_pb2.WriteRequest()
        for family in text_string_to_metric_families(gzip.decompress(body).decode()):
            for sample in family.samples:
                ts = request.timeseries.add()
                ts.labels.append(types_pb2.Label(name="__name__", value=sample.name))
                ts.labels.extend(types_pb2.Label(name=k, value=v) for k, v in sample.labels.items())
                ts.samples.append(types_pb2.Sample(value=sample.value, timestamp=now_ms))
        cramjam.snappy.compress_raw(request.SerializeToString())
        return len(request.timeseries)

    return _rate(seconds, bodies, work)


FLOORS: dict[str, Callable[[float], float]] = {
    "forward": floor_forward,
    "json": floor_json,
    "otlp": floor_otlp,
    "otlp-wire": floor_otlp_wire,
    "remote_write": floor_remote_write,
    "scrape": floor_scrape,
}


def measure_floor(kind: str, seconds: float, core: set[int]) -> float:
    """Runs a floor in a child process pinned to ``core`` (burnline's) and returns its rate."""
    code = (
        f"import sys, os; sys.path[:0] = [{str(HERE)!r}, {str(ROOT)!r}]; "
        f"os.sched_setaffinity(0, {sorted(core)!r}); "
        # The allocator as burnline sets it: at glibc's defaults the Forward floor's process spent
        # about a third of its time faulting in pages its heap had just given back (RESULTS.md,
        # "glibc's allocator"), and a floor that does avoidable work flatters every ratio to it.
        "from collector.core.malloc_tuning import tune_allocator; tune_allocator(); "
        # The garbage collector as burnline runs it (start-up frozen, a young collection every
        # 20,000 allocations): at CPython's default of 700 the JSON floor spent about a third of
        # its time collecting (bench/RESULTS.md, "Floors that do the whole work").
        "from collector.core.gc_tuning import tune_for_streaming; tune_for_streaming(); "
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
    # Over the whole run (warm-up included), read after the load generator ended: burnline's own
    # burnline_records_refused_total and burnline_records_accepted_total of the receiver, beside the
    # load generator's refused, sent, acked and unanswered items (refused above is the generator's).
    burnline_refused: float | None = None
    burnline_accepted: float | None = None
    # burnline_accepted per CPU-second burnline spent from ready to drained: every record of the run,
    # warm-up included, and no backlog carried into or out of the count (the e2e figure charges the
    # window with the warm-up's backlog, which flatters a receiver that accepts faster).
    whole_run_per_cpu_s: float | None = None
    gen_sent: int | None = None
    gen_acked: int | None = None
    gen_unanswered: int | None = None
    connections: int | None = None
    burnline_cores: str = ""
    burnline_processes: int = 1
    workers: int | None = None
    note: str = ""


def admin_sum(text: str, name: str, component: str | None = None) -> float:
    """The sum of a metric's samples on burnline's admin /metrics, of one component or all."""
    total = 0.0
    want = f'component="{component}"'
    for line in text.splitlines():
        if line.startswith(name + "{") and (component is None or want in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def refusal_reasons(text: str, component: str) -> str:
    """burnline_records_refused_total of one receiver by reason, e.g. ``queue full: 109,000``."""
    by_reason: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("burnline_records_refused_total{") and f'component="{component}"' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in line else "?"
            by_reason[reason] = by_reason.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return ", ".join(f"{reason}: {n:,.0f}" for reason, n in sorted(by_reason.items()) if n)


def http_text(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait_file(path: Path, lines: int, deadline_s: float = 60.0) -> list[str]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if path.exists():
            got = path.read_text().splitlines()
            if len(got) >= lines:
                return got
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not get {lines} lines within {deadline_s:.0f}s")


def scrape_receiver(ports: list[str]) -> dict[str, Any]:
    return {
        "prometheus_scrape": {
            "scrape_interval": f"{SCRAPE_INTERVAL:g}s",
            "jobs": [
                {"job_name": "bench", "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}
            ],
        }
    }


def run_scenario(
    s: Scenario,
    work: Path,
    *,
    seconds: float,
    warmup: float,
    connections: int,
    floor: float,
    name: str = "",
    workers: int | None = None,
) -> Row:
    burnline_core, other_cores = cores(workers)
    backend_port, backend_stats, receiver_port, admin_port = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    )
    backend_address = f"127.0.0.1:{backend_port}"
    scrape = s.backend == "scrape-targets"
    if scrape:
        # The scrape targets are the load: a whole interval of warm-up spreads their first scrapes.
        warmup = max(warmup, SCRAPE_INTERVAL)
    exporters = s.exporter(backend_address)
    metrics_url = f"http://127.0.0.1:{admin_port}/metrics"
    if s.backend == "none":
        stats_url = f"http://127.0.0.1:{admin_port}/readyz"
    elif s.backend == "otlp-grpc":
        stats_url = f"http://127.0.0.1:{backend_stats}/_bench/stats"
    else:
        stats_url = f"http://127.0.0.1:{backend_port}/_bench/stats"
    exporter_id = next(iter(exporters))

    def delivered() -> float:
        if s.delivered_from == "exported":
            return admin_sum(http_text(metrics_url), "burnline_records_exported_total", exporter_id)
        return float(http_json(stats_url)["items"])

    backend_args = [PYTHON, str(HERE / "doubles.py"), s.backend, "--port", str(backend_port)]
    if s.backend == "otlp-grpc":
        backend_args += ["--stats-port", str(backend_stats)]
    ports_file = work / "ports.txt"
    if scrape:
        backend_args += ["--targets", str(SCRAPE_TARGETS), "--ports-file", str(ports_file)]
    with contextlib.ExitStack() as stack:
        if s.backend != "none":
            stack.enter_context(process(backend_args, other_cores, work / "backend.log"))
            wait_http(stats_url)
        receivers = (
            scrape_receiver(wait_file(ports_file, SCRAPE_TARGETS)) if scrape else s.receiver(receiver_port)
        )
        service: dict[str, Any] = {
            "data_dir": str(work / "data"),
            "log_level": "warning",
            "admin": {"endpoint": f"127.0.0.1:{admin_port}"},
            "pipelines": {s.signal: {"receivers": [s.receiver_id], "exporters": list(exporters)}},
        }
        if workers is not None:
            service["workers"] = workers
        config: dict[str, Any] = {"receivers": receivers, "exporters": exporters, "service": service}
        if s.slos:
            config["slos"] = log_slos(s.slos)
        config_path = work / "burnline.yaml"
        config_path.write_text(yaml.safe_dump(config))
        burnline = stack.enter_context(
            process(
                [PYTHON, "-m", "collector", "run", "-c", str(config_path)],
                burnline_core,
                work / "burnline.log",
            )
        )
        tree = ProcessTree(burnline.pid)
        wait_http(f"http://127.0.0.1:{admin_port}/readyz", 120.0)
        cpu_ready = tree.cpu_seconds()
        t0 = time.time() + warmup
        gen = None
        if s.loadgen:
            err = stack.enter_context((work / "loadgen.log").open("wb"))
            gen = subprocess.Popen(
                [PYTHON, str(HERE / "loadgen.py"), s.loadgen, f"127.0.0.1:{receiver_port}", "--t0", str(t0),
                 "--seconds", str(seconds), "--connections", str(connections),
                 "--per-request", str(s.per_request)],
                stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
            )  # fmt: skip
            os.sched_setaffinity(gen.pid, other_cores)
        time.sleep(max(0.0, t0 - time.time()))
        cpu0, delivered0 = tree.cpu_seconds(), delivered()
        stats0 = http_json(stats_url) if scrape else {}
        queued0 = queued_records(metrics_url) if scrape else 0.0
        time.sleep(max(0.0, t0 + seconds - time.time()))
        cpu1, delivered1 = tree.cpu_seconds(), delivered()
        stats1 = http_json(stats_url) if scrape else {}
        queued1 = queued_records(metrics_url) if scrape else 0.0
        processes = tree.count()
        if gen is not None:
            out, _ = gen.communicate(timeout=seconds + 240)
            report = orjson.loads(out.splitlines()[-1])
        else:
            report = {
                "items": stats1["scraped_samples"] - stats0["scraped_samples"],
                "bytes": stats1["scraped_bytes"] - stats0["scraped_bytes"],
                "refused": 0,
                "errors": 0,
                "p50_ms": None,
                "p99_ms": None,
                "cpu_seconds": round(stats1["cpu_seconds"] - stats0["cpu_seconds"], 3),
            }
        # Scraping never stops, so there is nothing to drain; every other load has stopped now.
        drained_at = None if scrape else drain(metrics_url, time.time() + DRAIN_TIMEOUT)
        cpu2 = tree.cpu_seconds()
        own = http_text(metrics_url)
        refused_total = admin_sum(own, "burnline_records_refused_total", s.receiver_id)
        accepted_total = admin_sum(own, "burnline_records_accepted_total", s.receiver_id)
        note = check_delivery(s, admin_port, exporters, report)
        reasons = refusal_reasons(own, s.receiver_id)
        if reasons:
            note = "; ".join(filter(None, [note, f"burnline's refusal reasons: {reasons}"]))
        if scrape:
            failed = admin_sum(own, "burnline_receiver_errors_total", s.receiver_id)
            scrapes = stats1["scrapes"] - stats0["scrapes"]
            asked = SCRAPE_TARGETS * seconds / SCRAPE_INTERVAL
            note = (
                f"{scrapes:,} scrapes answered in the window ({SCRAPE_TARGETS:,} targets every "
                f"{SCRAPE_INTERVAL:g} s ask {asked:,.0f}); exporter queue {queued0:,.0f} -> "
                f"{queued1:,.0f} points over the window; {failed:,.0f} failed scrapes in the run"
            )
        rss = tree.peak_rss_mib()
    items = report["items"]
    cpu = max(cpu1 - cpu0, 1e-9)
    per_cpu = items / cpu
    delivered_n = delivered1 - delivered0
    if scrape:
        # Samples delivered to the remote-write sink in the window, per CPU-second in the window.
        sustained = delivered_n / cpu
    else:
        sustained = items / max(cpu2 - cpu0, 1e-9) if drained_at is not None else 0.0
    # The OTLP sinks count requests, not spans: each request carries per_request spans.
    if s.backend.startswith("otlp"):
        delivered_n *= s.per_request
    return Row(
        name or s.name,
        round(items / seconds, 1),
        round(report["bytes"] / seconds / 2**20, 2),
        round(cpu / items * 1e6, 2) if items else float("inf"),
        round(per_cpu, 1),
        round(floor, 1),
        round(per_cpu / floor, 4) if floor else 0.0,
        report["p50_ms"],
        report["p99_ms"],
        round(rss, 1),
        round(delivered_n / seconds, 1),
        round(sustained, 1),
        round(sustained / floor, 4) if floor else 0.0,
        round(drained_at - (t0 + seconds), 1) if drained_at is not None else float("nan"),
        report["refused"],
        report["errors"],
        report["cpu_seconds"],
        burnline_refused=refused_total,
        burnline_accepted=accepted_total,
        whole_run_per_cpu_s=(
            round(accepted_total / max(cpu2 - cpu_ready, 1e-9), 1) if drained_at is not None else None
        ),
        gen_sent=report.get("sent_total"),
        gen_acked=report.get("acked_total"),
        gen_unanswered=report.get("unanswered"),
        connections=None if scrape else connections,
        burnline_cores=",".join(map(str, sorted(burnline_core))),
        burnline_processes=processes,
        workers=workers,
        note=note,
    )


def check_delivery(s: Scenario, admin_port: int, exporters: dict[str, Any], report: dict[str, Any]) -> str:
    """What shows the scenario's work really happened: the series on the pull exporter's /metrics,
    the SLOs' counted events. Read after the window (its CPU is not counted)."""
    try:
        if s.delivered_from == "exported":
            endpoint = exporters[next(iter(exporters))]["endpoint"]
            text = http_text(f"http://{endpoint}/metrics", timeout=120)
            shown = sum(1 for line in text.splitlines() if 'pod="' in line and not line.startswith("#"))
            return f"{shown:,} of {RW_REQUESTS * RW_SAMPLES:,} sent series on the exporter's /metrics"
        if s.slos:
            status = http_json(f"http://127.0.0.1:{admin_port}/api/v1/slos/slo-0", timeout=60)
            events = status["events"]
            return (
                f"{s.slos:,} SLOs; slo-0 ({status['service']}, errors bad) counted "
                f"{events['good'] + events['bad']:,.0f} events, {events['bad']:,.0f} bad"
            )
    except (OSError, KeyError, ValueError) as exc:
        return f"check failed: {exc!r}"
    return ""


COLUMNS = [
    ("scenario", 21, "{}"),
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
    ("burnline_refused", 10, "{:.0f}"),
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
    "refused": "gen ref",
    "burnline_refused": "bl refused",
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
    extra = []
    if row.gen_sent is not None:
        extra.append(
            f"whole run: generator sent {row.gen_sent:,}, acked {row.gen_acked:,}, refused {row.refused:,}, "
            f"unanswered {row.gen_unanswered:,}; burnline accepted {row.burnline_accepted or 0:,.0f}, "
            f"refused {row.burnline_refused or 0:,.0f}"
            + (
                f"; {row.whole_run_per_cpu_s:,.0f} accepted per CPU-second from ready to drained"
                if row.whole_run_per_cpu_s is not None
                else ""
            )
        )
    if row.burnline_processes > 1 or row.workers is not None:
        extra.append(f"burnline: {row.burnline_processes} process(es) on core(s) {row.burnline_cores}")
    if row.note:
        extra.append(row.note)
    for line in extra:
        print(f"    {row.scenario}: {line}", flush=True)


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
    parser.add_argument(
        "--overload", action="store_true",
        help="--overload-factor times the connections, no pacing, default limits; refusals side by side",
    )  # fmt: skip
    parser.add_argument("--overload-factor", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=None,
        help="write service.workers: N into the config and pin burnline to N cores (if there are more)",
    )  # fmt: skip
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {s.name for s in SCENARIOS})
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(s.name for s in SCENARIOS)}"
        )
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    connections = args.connections
    if args.overload:
        skipped = [s.name for s in chosen if not s.loadgen]
        if skipped:
            print(f"--overload: skipping {', '.join(skipped)} (no load generator: the targets set the load)")
        chosen = [s for s in chosen if s.loadgen]
        connections *= args.overload_factor
    burnline_core, other = cores(args.workers)
    workers = f", service.workers: {args.workers}" if args.workers is not None else ""
    print(f"burnline on core(s) {sorted(burnline_core)}{workers}, load and backends on {sorted(other)}; "
          f"{args.seconds:.0f} s windows after {args.warmup:.0f} s warm-up; "
          f"{connections} connections")  # fmt: skip
    print_header()
    rows = []
    for s in chosen:
        work = Path(tempfile.mkdtemp(prefix=f"bench-{s.name}-"))
        row = None
        name = f"{s.name}-{args.overload_factor}x" if args.overload else s.name
        # The floor right before its scenario, on the same core: on a shared machine the two see
        # about the same contention, so their ratio holds where absolute rates drift.
        floor = measure_floor(s.floor, min(args.seconds, 5.0), {min(burnline_core)})
        for attempt in (1, 2):  # a second try when a shared machine's port or process hiccups
            try:
                row = run_scenario(
                    s, work, seconds=args.seconds, warmup=args.warmup, connections=connections,
                    floor=floor, name=name, workers=args.workers,
                )  # fmt: skip
                break
            except Exception as exc:
                print(f"{s.name}: attempt {attempt} failed: {exc!r}", flush=True)
                traceback.print_exc()
                shutil.rmtree(work / "data", ignore_errors=True)
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
                    "command": " ".join(sys.argv),
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
