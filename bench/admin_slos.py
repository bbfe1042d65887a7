"""The admin server with many SLOs: what one request for /metrics, /api/v1/slos and /status costs.

For each path, starts `burnline run` (its own core) with ``--slos`` log SLOs (bench/pipeline.py's,
the first ten matching Forward traffic this script sends once so that they have counts) and asks it
``--repeat`` times, one request at a time. Per endpoint it prints the body size, the request's wall
time, burnline's CPU-seconds for it, the peak RSS above the RSS before the request (the transient:
VmHWM is reset through /proc/<pid>/clear_refs before each request), and the longest a /healthz
request waited meanwhile (another process asks every 20 ms): how long the event loop, which every
receiver shares, was not answering.

Run: .venv/bin/python bench/admin_slos.py [--slos 10000] [--repeat 5] [--paths /metrics,/api/v1/slos]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
import workloads  # noqa: E402
from pipeline import PYTHON, ProcessTree, cores, log_slos, process, wait_http  # noqa: E402

from tests.support import free_port  # noqa: E402

PATHS = (
    "/metrics",
    "/api/v1/slos",
    "/api/v1/slos?service=other-7",
    "/api/v1/slos?firing=true",
    "/status",
    "/status?service=other-7",
)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _send_forward(port: int, records: int) -> None:
    """One PackedForward frame of workload records, so that the matching SLOs have counts."""
    (frame,) = workloads.forward_frames(workloads.log_records(records), records)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(frame)
        sock.settimeout(10)
        sock.recv(1024)  # the ack: everything is counted once it is here


class HealthProbe:
    """Asks /healthz every 20 ms, in a process of its own (so that reading a large answer in this
    one never delays it), until stopped; ``longest`` is the longest answer since it was set to 0."""

    def __init__(self, url: str) -> None:
        self._longest = multiprocessing.Value("d", 0.0)
        self._stopped = multiprocessing.Event()
        self._process = multiprocessing.Process(target=self._run, args=(url,), daemon=True)

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._stopped.set()
        self._process.join(10)

    @property
    def longest(self) -> float:
        return float(self._longest.value)

    @longest.setter
    def longest(self, value: float) -> None:
        self._longest.value = value

    def _run(self, url: str) -> None:
        deadline = time.monotonic() + 3600  # bounded, whatever happens to the parent
        while not self._stopped.wait(0.02) and time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    response.read()
            except OSError:
                continue
            took = time.perf_counter() - t
            with self._longest.get_lock():
                self._longest.value = max(self._longest.value, took)


def measure(
    base: str, path: str, pid: int, tree: ProcessTree, probe: HealthProbe
) -> tuple[int, float, float, float, float]:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib(pid, "VmRSS")
    cpu = tree.cpu_seconds()
    probe.longest = 0.0
    t = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=120) as response:
        size = len(response.read())
    wall = time.perf_counter() - t
    time.sleep(0.1)  # the probe's request in flight finishes
    return (
        size,
        wall,
        tree.cpu_seconds() - cpu,
        (_status_kib(pid, "VmHWM") - before) / 1024,
        probe.longest,
    )


def run_path(path: str, slos: int, repeat: int, core: set[int]) -> None:
    """Measures one path on a burnline of its own: memory an earlier path's answer freed would
    otherwise be reused and hide this one's."""
    with tempfile.TemporaryDirectory(prefix="bench-admin-") as tmp:
        work = Path(tmp)
        admin_port, forward_port = free_port(), free_port()
        config = {
            "receivers": {"forward": {"endpoint": f"127.0.0.1:{forward_port}"}},
            "exporters": {"local": {"path": str(work / "data" / "local.db")}},
            "service": {
                "data_dir": str(work / "data"),
                "log_level": "warning",
                "admin": {"endpoint": f"127.0.0.1:{admin_port}"},
                "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["local"]}},
            },
            "slos": log_slos(slos),
        }
        (work / "burnline.yaml").write_text(yaml.safe_dump(config))
        cmd = [PYTHON, "-m", "collector", "run", "-c", str(work / "burnline.yaml")]
        with process(cmd, core, work / "burnline.log") as burnline:
            base = f"http://127.0.0.1:{admin_port}"
            wait_http(base + "/readyz", 300.0)
            _send_forward(forward_port, 1000)
            tree = ProcessTree(burnline.pid)
            probe = HealthProbe(base + "/healthz")
            probe.start()
            idle = _status_kib(burnline.pid, "VmRSS") / 1024
            try:
                runs = [measure(base, path, burnline.pid, tree, probe) for _ in range(repeat)]
            finally:
                probe.stop()
    size = runs[-1][0]
    wall, cpu, rss, lag = (statistics.median(r[i] for r in runs) for i in (1, 2, 3, 4))
    worst_lag = max(r[4] for r in runs)
    print(
        f"{path:<32} {idle:>8.0f} {size:>11,} {wall * 1000:>8.0f} {cpu * 1000:>7.0f} {rss:>8.1f}"
        f" {lag * 1000:>5.0f}/{worst_lag * 1000:<4.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slos", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--paths", default=",".join(PATHS))
    args = parser.parse_args()
    burnline_core, _ = cores()
    print(f"{args.slos} SLOs")
    print(
        f"{'path':<32} {'idle MiB':>8} {'bytes':>11} {'wall ms':>8} {'CPU ms':>7} {'+RSS MiB':>8}"
        f" {'healthz ms':>10}"
    )
    for path in args.paths.split(","):
        run_path(path, args.slos, args.repeat, burnline_core)
    print(
        "(medians of the runs, each path on a burnline of its own; +RSS: peak above the RSS before the"
        " request; healthz: median/worst of each run's longest /healthz answer)"
    )


if __name__ == "__main__":
    main()
