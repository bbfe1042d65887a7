"""`burnline logs` and `burnline traces`: querying the local store through the command line."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

import tests.support  # noqa: F401  (registers the `inject` receiver the configs below use)
from collector.cli import main
from collector.core.model import LogRecord, Severity, Signal, Span, SpanEvent, SpanKind, StatusCode
from collector.query import timespec
from collector.query.filters import LogQuery, TraceQuery
from collector.query.format import format_duration, iso_time
from collector.query.logs import StoredLog, follow, newer, recent
from collector.query.spans import StoredSpan, recent_traces, span_tree
from collector.query.store import open_reader
from exporters.local.exporter import SCHEMA_VERSION, RetentionConfig, StoreWriter

NOW = time.time_ns()
MIN = 60 * 1_000_000_000


@pytest.fixture(autouse=True)
def clock_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The records below are placed relative to NOW, taken when this module was collected. The
    in-process CLI reads the time from collector.query.timespec: pinned to NOW, `--since 15m`
    keeps meaning the same records however long after collection a test runs (on a busy machine
    this module ran 19 minutes after collection). Subprocess tests keep the real clock."""
    monkeypatch.setattr(timespec, "time", SimpleNamespace(time_ns=lambda: NOW))


TRACE = "5b8efff798038103d269b633813fc60c"
REPO = Path(__file__).resolve().parents[2]


def pod(name: str, service: str) -> dict[str, Any]:
    return {"service.name": service, "k8s.namespace.name": "shop", "k8s.pod.name": name, "team": "payments"}


CHECKOUT, CART = pod("checkout-7d9f", "checkout"), pod("cart-55c1", "cart")

RECORDS = [
    LogRecord(NOW - 120 * MIN, "old failure", Severity.ERROR, "ERROR", resource=CHECKOUT),
    LogRecord(NOW - 30 * MIN, "payment ok", Severity.INFO, "info", {"order": 17}, CHECKOUT),
    LogRecord(
        NOW - 20 * MIN,
        "payment failed: card declined",
        Severity.ERROR,
        "error",
        {"http.status": 402, "note": "two words"},
        CHECKOUT,
        trace_id=TRACE,
        span_id="00f067aa0ba902b7",
    ),
    LogRecord(NOW - 10 * MIN, "Cart TIMEOUT talking to redis", Severity.WARN + 1, "warning", resource=CART),
    LogRecord(NOW - 5 * MIN, "cache hit 100% of keys", Severity.DEBUG, "debug", resource=CART),
    LogRecord(NOW - 4 * MIN, "cache hit 1000 of keys", Severity.DEBUG, "debug", resource=CART),
    LogRecord(NOW - 3 * MIN, {"event": "checkout", "items": [1, 2]}, 0, "", resource=CHECKOUT),
    LogRecord(
        NOW - 1 * MIN, "Über-crash in \x1b[31mred\x1b[0m\nsecond line", Severity.FATAL, resource=CHECKOUT
    ),
]


def write(path: Path, records: list[LogRecord], spans: list[Span] | None = None) -> None:
    writer = StoreWriter(path, RetentionConfig())
    writer.open()
    try:
        writer.write(Signal.LOGS, records)
        if spans:
            writer.write(Signal.TRACES, spans)
    finally:
        writer.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "burnline.db"
    write(path, RECORDS)
    return path


def logs(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["logs", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def fields(line: str) -> list[str]:
    """time, level, service, body, attributes (columns are two or more spaces apart)."""
    return re.split(r" {2,}", line)


def bodies(lines: list[str]) -> list[str]:
    return [fields(line)[3] for line in lines]


# ---------------------------------------------------------------------------------------------------
# Output


def test_default_output_is_one_line_per_record_of_the_last_hour(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = logs(capsys, "--db", str(db))
    assert code == 0 and err == ""
    assert len(lines) == 7  # the record of two hours ago is outside the default --since 1h
    rec = RECORDS[2]
    assert lines[1] == (
        f"{iso_time(rec.time_unix_nano)}  ERROR  checkout  payment failed: card declined  "
        'http.status=402 note="two words" k8s.namespace.name=shop k8s.pod.name=checkout-7d9f '
        f"trace_id={TRACE}"
    )
    assert lines[0].startswith(
        f"{iso_time(RECORDS[1].time_unix_nano)}  INFO   checkout  payment ok  order=17"
    )
    assert fields(lines[3])[1] == "DEBUG"
    assert lines[5] == (
        f'{iso_time(RECORDS[6].time_unix_nano)}  -      checkout  {{"event":"checkout","items":[1,2]}}'
        "  k8s.namespace.name=shop k8s.pod.name=checkout-7d9f"
    )
    # Control characters cannot break the line or reach the terminal.
    assert "Über-crash in \\x1b[31mred\\x1b[0m\\nsecond line" in lines[6]
    assert "\x1b" not in "".join(lines)


def test_iso_time_format() -> None:
    assert iso_time(1_795_993_008_123_456_789) == "2026-11-29T22:56:48.123Z"
    assert iso_time(1_795_993_008_123_456_789, digits=9) == "2026-11-29T22:56:48.123456789Z"
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"


def test_json_output_has_every_field(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = logs(capsys, "--db", str(db), "--json", "--since", "3h")
    assert code == 0
    docs = [orjson.loads(line) for line in lines]
    assert len(docs) == len(RECORDS)
    failed = docs[2]
    assert failed == {
        "time": iso_time(RECORDS[2].time_unix_nano, digits=9),
        "time_unix_nano": RECORDS[2].time_unix_nano,
        "observed_time_unix_nano": 0,
        "service": "checkout",
        "level": "ERROR",
        "severity_number": 17,
        "severity_text": "error",
        "body": "payment failed: card declined",
        "attributes": {"http.status": 402, "note": "two words"},
        "resource": CHECKOUT,
        "trace_id": TRACE,
        "span_id": "00f067aa0ba902b7",
        "scope_name": "",
    }
    assert docs[6]["body"] == {"event": "checkout", "items": [1, 2]}
    assert docs[6]["attributes"] == {} and docs[6]["level"] == ""
    assert docs[7]["body"] == RECORDS[7].body


# ---------------------------------------------------------------------------------------------------
# Filters


def test_service_filter(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = logs(capsys, "--db", str(db), "--service", "cart")
    assert bodies(lines) == [
        "Cart TIMEOUT talking to redis",
        "cache hit 100% of keys",
        "cache hit 1000 of keys",
    ]
    _, lines, _ = logs(capsys, "--db", str(db), "--service", "nope")
    assert lines == []


@pytest.mark.parametrize("flag", ["--level", "--min-level", "-l"])
def test_level_means_that_level_and_above(db: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    _, lines, _ = logs(capsys, "--db", str(db), flag, "warn")
    assert [fields(line)[1] for line in lines] == ["ERROR", "WARN", "FATAL"]
    _, lines, _ = logs(capsys, "--db", str(db), flag, "ERROR")
    assert [fields(line)[1] for line in lines] == ["ERROR", "FATAL"]
    _, lines, _ = logs(capsys, "--db", str(db), flag, "21")
    assert len(lines) == 1 and "Über-crash" in lines[0]


def test_bad_arguments_are_usage_errors(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--level", "loud"], ["--since", "soon"], ["--trace-id", "xyz"], ["--limit", "-3"]):
        with pytest.raises(SystemExit) as exc:
            main(["logs", "--db", str(db), *args])
        assert exc.value.code == 2
        assert args[1] in capsys.readouterr().err


def test_grep_is_a_case_insensitive_substring(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = logs(capsys, "--db", str(db), "--grep", "timeout")
    assert bodies(lines) == ["Cart TIMEOUT talking to redis"]
    # LIKE wildcards in the text are literal characters.
    _, lines, _ = logs(capsys, "--db", str(db), "--grep", "100%")
    assert bodies(lines) == ["cache hit 100% of keys"]
    _, lines, _ = logs(capsys, "--db", str(db), "--grep", "hit_1")
    assert lines == []
    # Beyond ASCII, case is still ignored.
    _, lines, _ = logs(capsys, "--db", str(db), "--grep", "üBER-CRASH")
    assert len(lines) == 1 and "Über-crash" in lines[0]
    # Structured bodies are searched as their JSON text.
    _, lines, _ = logs(capsys, "--db", str(db), "-g", '"items"')
    assert len(lines) == 1


def test_since_duration_and_time(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = logs(capsys, "--db", str(db), "--since", "15m")
    assert bodies(lines)[0] == "Cart TIMEOUT talking to redis" and len(lines) == 5
    _, lines, _ = logs(capsys, "--db", str(db), "--since", "3h")
    assert bodies(lines)[0] == "old failure" and len(lines) == len(RECORDS)
    since = iso_time(RECORDS[4].time_unix_nano, digits=9)
    _, lines, _ = logs(capsys, "--db", str(db), "--since", since)
    assert bodies(lines)[0] == "cache hit 100% of keys" and len(lines) == 4


def test_trace_id(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = logs(capsys, "--db", str(db), "--since", "3h", "--trace-id", TRACE.upper())
    assert bodies(lines) == ["payment failed: card declined"]
    _, lines, _ = logs(capsys, "--db", str(db), "--trace-id", "0" * 32)
    assert lines == []


def test_limit_takes_the_most_recent_oldest_first(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = logs(capsys, "--db", str(db), "--limit", "2", "--since", "3h")
    assert [fields(line)[0] for line in lines] == [iso_time(r.time_unix_nano) for r in RECORDS[-2:]]
    _, lines, _ = logs(capsys, "--db", str(db), "-n", "0", "--since", "3h")
    assert len(lines) == len(RECORDS)


def test_filters_combine(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = logs(capsys, "--db", str(db), "--service", "checkout", "--level", "error", "--grep", "FAIL",
                       "--since", "3h")  # fmt: skip
    assert bodies(lines) == ["old failure", "payment failed: card declined"]


# ---------------------------------------------------------------------------------------------------
# Finding the store


def test_missing_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = logs(capsys, "--db", str(tmp_path / "nowhere.db"))
    assert code == 1 and lines == []
    assert "no local store at" in err and "nowhere.db" in err and "--db" in err


def test_store_of_a_newer_burnline_is_refused(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    code, _, err = logs(capsys, "--db", str(db))
    assert code == 1 and "newer burnline" in err


@pytest.mark.parametrize("content", [b"", b"not sqlite at all " * 200])
def test_files_that_are_not_stores_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(content)
    code, _, err = logs(capsys, "--db", str(path))
    assert code == 1 and str(path) in err


def test_default_location_and_data_dir_env(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BURNLINE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # the fixture's store is ./data/burnline.db from here
    code, lines, _ = logs(capsys, "--service", "cart")
    assert code == 0 and len(lines) == 3
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "burnline.db", [LogRecord(NOW, "from the env dir", resource=CART)])
    monkeypatch.setenv("BURNLINE_DATA_DIR", str(elsewhere))
    code, lines, _ = logs(capsys)
    assert code == 0 and bodies(lines) == ["from the env dir"]


def _config(tmp_path: Path, exporters: str, data_dir: str | None = None) -> Path:
    path = tmp_path / "burnline.yaml"
    exporter_id = exporters.split(":", maxsplit=1)[0].strip()
    service = f"  data_dir: {data_dir}\n" if data_dir else ""
    path.write_text(
        "receivers:\n  inject: {}\n"
        f"exporters:\n{exporters}"
        f"service:\n{service}  pipelines:\n"
        f"    logs: {{receivers: [inject], exporters: [{exporter_id}]}}\n"
    )
    return path


def test_store_path_from_config(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, f"  local: {{path: {db}}}\n")
    code, lines, _ = logs(capsys, "-c", str(config), "--service", "cart")
    assert code == 0 and len(lines) == 3
    # Without a path, the store is burnline.db in the service's data_dir.
    config = _config(tmp_path, "  local/main: {}\n", data_dir=str(db.parent))
    code, lines, _ = logs(capsys, "-c", str(config), "--service", "cart")
    assert code == 0 and len(lines) == 3
    # --db wins over -c.
    code, lines, _ = logs(capsys, "-c", str(config), "--db", str(tmp_path / "other.db"))
    assert code == 1


def test_config_problems_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "  capture: {}\n")
    code, _, err = logs(capsys, "-c", str(config))
    assert code == 1 and "no local exporter" in err
    code, _, err = logs(capsys, "-c", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml" in err


# ---------------------------------------------------------------------------------------------------
# Live stores


def test_query_does_not_wait_for_an_open_write(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO logs (time_unix_nano, observed_time_unix_nano, service, severity_number,"
            " severity_text, body, body_is_json) VALUES (?, 0, 'cart', 9, '', 'uncommitted', 0)",
            (NOW,),
        )
        started = time.monotonic()
        code, lines, _ = logs(capsys, "--db", str(db), "--service", "cart")
        assert time.monotonic() - started < 2.0
        assert code == 0 and "uncommitted" not in "".join(lines) and len(lines) == 3
        writer.execute("COMMIT")
    finally:
        writer.close()
    _, lines, _ = logs(capsys, "--db", str(db), "--service", "cart")
    assert bodies(lines)[-1] == "uncommitted"


def test_newer_pages_through_new_records(db: Path) -> None:
    conn = open_reader(db)
    try:
        _, last = recent(conn, LogQuery(limit=1))
        write(
            db,
            [
                LogRecord(NOW + i, f"new {i}", Severity.INFO, resource=CART if i % 2 else CHECKOUT)
                for i in range(7)
            ],
        )
        seen: list[StoredLog] = []
        more, after = True, last
        calls = 0
        while more and calls < 10:
            got, after, more = newer(conn, LogQuery(service="checkout"), after, page=2)
            seen += got
            calls += 1
        assert [r.body for r in seen] == ["new 0", "new 2", "new 4", "new 6"]
        assert calls == 3
        assert newer(conn, LogQuery(), after) == ([], after, False)
    finally:
        conn.close()


def test_follow_emits_new_matches_until_stopped(db: Path) -> None:
    emitted: list[str | None] = []
    stop = threading.Event()
    started = threading.Event()

    def run() -> None:
        conn = open_reader(db)  # a connection belongs to the thread that made it
        try:
            _, last = recent(conn, LogQuery())
            started.set()
            follow(conn, LogQuery(min_severity=Severity.WARN), last, record_bodies, 0.02, stop=stop)
        finally:
            conn.close()

    def record_bodies(rows: list[StoredLog]) -> None:
        emitted.extend(r.body for r in rows)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(60)
        late = LogRecord(NOW - 600 * MIN, "late but new", Severity.ERROR)
        write(db, [late, LogRecord(NOW, "quiet", Severity.INFO), LogRecord(NOW, "loud", Severity.WARN)])
        deadline = time.monotonic() + 60
        while len(emitted) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emitted == ["late but new", "loud"]
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()


@pytest.fixture
def follower(db: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "logs", "--db", str(db), "-f", "--interval", "50ms", "-n", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_follow_command_prints_new_records_and_ends_on_ctrl_c(
    db: Path, follower: tuple[subprocess.Popen[str], queue.Queue[str]]
) -> None:
    proc, lines = follower
    assert "Über-crash" in lines.get(timeout=60)  # the most recent record first
    write(db, [LogRecord(time.time_ns(), "arrived while following", Severity.INFO, resource=CART)])
    assert "arrived while following" in lines.get(timeout=60)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        # PYTHONFAULTHANDLER (set by the fixture): SIGABRT prints every thread's stack on stderr.
        proc.send_signal(signal.SIGABRT)
        proc.wait(30)
        pytest.fail(f"burnline logs -f still ran 60 s after Ctrl-C; its stacks:\n{proc.stderr.read()}")
    assert code == 0
    assert "Traceback" not in proc.stderr.read()


# ---------------------------------------------------------------------------------------------------
# burnline traces

MS = 1_000_000
SLOW, FAST, OLD, BROKEN = "a1" * 16, "b2" * 16, "c3" * 16, "d4" * 16
DB_RESOURCE = {"service.name": "cart-db", "k8s.pod.name": "db-0"}


def sp(
    trace: str, n: int, parent: int | None, name: str, *, at: int, ms: float, res: dict[str, Any], **kw: Any
) -> Span:
    """Span ``n`` of ``trace``, starting ``at`` milliseconds before NOW, lasting ``ms``."""
    start = NOW - at * MS
    return Span(
        trace,
        f"{n:016x}",
        name,
        start,
        start + int(ms * MS),
        parent_span_id=f"{parent:016x}" if parent is not None else "",
        resource=res,
        **kw,
    )


MIN_MS = 60_000
SPANS = [
    # 40 minutes ago: a slow, failing checkout across three services.
    sp(SLOW, 1, None, "GET /checkout", at=40 * MIN_MS, ms=1234, res=CHECKOUT, kind=SpanKind.SERVER,
       attributes={"http.response.status_code": 200}),
    sp(SLOW, 2, 1, "cart.load", at=40 * MIN_MS - 10, ms=300, res=CART, kind=SpanKind.CLIENT),
    sp(SLOW, 3, 2, "SELECT cart", at=40 * MIN_MS - 20, ms=250.5, res=DB_RESOURCE, kind=SpanKind.CLIENT,
       status_code=StatusCode.ERROR, status_message="deadlock\ndetected",
       events=[SpanEvent(NOW, "exception", {"exception.type": "Deadlock"})]),
    sp(SLOW, 4, 1, "charge", at=40 * MIN_MS - 400, ms=800, res=CHECKOUT, kind=SpanKind.CLIENT,
       status_code=StatusCode.OK),
    # 10 minutes ago: a fast healthy cart request.
    sp(FAST, 1, None, "GET /cart", at=10 * MIN_MS, ms=12, res=CART, kind=SpanKind.SERVER),
    sp(FAST, 2, 1, "SELECT cart", at=10 * MIN_MS - 1, ms=0.8, res=DB_RESOURCE, kind=SpanKind.CLIENT),
    # 3 hours ago.
    sp(OLD, 1, None, "GET /old", at=180 * MIN_MS, ms=5, res=CHECKOUT, kind=SpanKind.SERVER),
    # 5 minutes ago: a trace whose root was not received, with a server span answering 503.
    sp(BROKEN, 7, 6, "POST /pay", at=5 * MIN_MS, ms=40, res=CHECKOUT, kind=SpanKind.SERVER,
       attributes={"http.response.status_code": 503}),
    sp(BROKEN, 8, 7, "fraud.check", at=5 * MIN_MS - 5, ms=20, res=CART),
]  # fmt: skip
TRACE_LOGS = [
    LogRecord(
        NOW - 40 * 60_000 * MS + 5 * MS, "charging card", Severity.INFO, resource=CHECKOUT, trace_id=SLOW
    ),
    LogRecord(
        NOW - 40 * 60_000 * MS - 30_000 * MS, "started early", Severity.INFO, resource=CART, trace_id=SLOW
    ),
]


@pytest.fixture
def traces_db(tmp_path: Path) -> Path:
    path = tmp_path / "traces" / "burnline.db"
    write(path, TRACE_LOGS, SPANS)
    return path


def traces(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["traces", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_traces_lists_one_line_per_trace_oldest_first(
    traces_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = traces(capsys, "--db", str(traces_db))
    assert code == 0 and err == ""
    start = [iso_time(SPANS[i].start_time_unix_nano) for i in (0, 4, 7)]
    assert lines == [
        f"{start[0]}  {SLOW}     1.23s    4 spans  ERROR  checkout  GET /checkout",
        f"{start[1]}  {FAST}      12ms    2 spans  -      cart  GET /cart",
        f"{start[2]}  {BROKEN}      40ms    2 spans  ERROR  checkout  POST /pay  (root span not stored)",
    ]  # the trace of three hours ago is outside the default --since 1h


def test_traces_json_sums_up_each_trace(traces_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = traces(capsys, "--db", str(traces_db), "--json", "--since", "4h")
    assert code == 0
    docs = [orjson.loads(line) for line in lines]
    assert [d["trace_id"] for d in docs] == [OLD, SLOW, FAST, BROKEN]
    assert docs[1] == {
        "trace_id": SLOW,
        "start": iso_time(SPANS[0].start_time_unix_nano, digits=9),
        "start_time_unix_nano": SPANS[0].start_time_unix_nano,
        "end_time_unix_nano": SPANS[0].end_time_unix_nano,
        "duration_ns": 1234 * MS,
        "span_count": 4,
        "error_count": 1,
        "error": True,
        "services": ["cart", "cart-db", "checkout"],
        "root_name": "GET /checkout",
        "root_service": "checkout",
        "root_span_id": f"{1:016x}",
        "has_root": True,
    }
    assert docs[3]["has_root"] is False and docs[3]["root_span_id"] == f"{7:016x}"


def trace_ids(lines: list[str]) -> list[str]:
    return [fields(line)[1] for line in lines]


def test_trace_filters(traces_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", str(traces_db)]
    # A trace matches when one of its spans does; the line still sums up the whole trace.
    _, lines, _ = traces(capsys, *db, "--service", "cart-db")
    assert trace_ids(lines) == [SLOW, FAST]
    assert "4 spans" in lines[0]
    _, lines, _ = traces(capsys, *db, "--errors")
    assert trace_ids(lines) == [SLOW, BROKEN]
    # Both on one span: a cart-db span failed in SLOW only; no cart span failed at all.
    _, lines, _ = traces(capsys, *db, "--errors", "-s", "cart-db")
    assert trace_ids(lines) == [SLOW]
    _, lines, _ = traces(capsys, *db, "--errors", "-s", "cart")
    assert lines == []
    _, lines, _ = traces(capsys, *db, "--min-duration", "40ms")
    assert trace_ids(lines) == [SLOW, BROKEN]
    _, lines, _ = traces(capsys, *db, "--min-duration", "1.3s")
    assert lines == []
    _, lines, _ = traces(capsys, *db, "--since", "15m")
    assert trace_ids(lines) == [FAST, BROKEN]
    _, lines, _ = traces(capsys, *db, "--since", "4h", "--limit", "2")
    assert trace_ids(lines) == [FAST, BROKEN]  # the most recent two, oldest first
    _, lines, _ = traces(capsys, *db, "--since", "4h", "-n", "0")
    assert trace_ids(lines) == [OLD, SLOW, FAST, BROKEN]


def test_trace_tree_indents_by_parent_with_durations_and_status(
    traces_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = traces(capsys, "--db", str(traces_db), "--trace-id", SLOW.upper())
    assert code == 0 and err == ""
    since = iso_time(TRACE_LOGS[1].time_unix_nano - 60_000 * MS)
    assert lines == [
        f"trace {SLOW}  {iso_time(SPANS[0].start_time_unix_nano)}  1.23s  4 spans  1 error"
        "  services: cart, cart-db, checkout",
        f"      +0s     1.23s  -      GET /checkout  (checkout, server)  span_id={1:016x}",
        f"    +10ms     300ms  -        cart.load  (cart, client)  span_id={2:016x}",
        f"    +20ms   250.5ms  ERROR      SELECT cart  (cart-db, client)  span_id={3:016x}"
        '  status_message="deadlock\\ndetected"',
        # The span's event, one level below it, at its offset from the trace's start.
        "  +40m00s                         event: exception  exception.type=Deadlock",
        f"   +400ms     800ms  ok       charge  (checkout, client)  span_id={4:016x}",
        # The trace's logs that name no span follow the tree; one was written before the trace began.
        "log records of this trace without a stored span:",
        "     -30s            INFO   log: started early  (cart)  k8s.namespace.name=shop"
        " k8s.pod.name=cart-55c1",
        "     +5ms            INFO   log: charging card  (checkout)  k8s.namespace.name=shop"
        " k8s.pod.name=checkout-7d9f",
        f"2 log records of this trace: burnline logs --trace-id {SLOW} --since {since} -n 0 --db {traces_db}",
    ]
    # The suggested command finds them.
    command = lines[-1].split(": ", 1)[1].split()
    code, found, _ = logs(capsys, *command[2:])
    assert code == 0 and bodies(found) == ["started early", "charging card"]


def test_trace_tree_marks_spans_whose_parent_is_not_stored(
    traces_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines, _ = traces(capsys, "--db", str(traces_db), "--trace-id", BROKEN)
    assert lines[1:] == [
        f"      +0s      40ms  ERROR  POST /pay  (checkout, server)  span_id={7:016x}"
        f"  (parent {6:016x} not stored)",
        f"     +5ms      20ms  -        fraud.check  (cart)  span_id={8:016x}",
    ]  # a server's 503 is an error though its status is unset


def test_trace_tree_json_has_every_field(traces_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = traces(capsys, "--db", str(traces_db), "--trace-id", SLOW, "--json")
    assert code == 0
    docs = [orjson.loads(line) for line in lines]
    assert [(d["name"], d["depth"]) for d in docs] == [
        ("GET /checkout", 0), ("cart.load", 1), ("SELECT cart", 2), ("charge", 1),
    ]  # fmt: skip
    failed = docs[2]
    assert failed == {
        "trace_id": SLOW,
        "span_id": f"{3:016x}",
        "parent_span_id": f"{2:016x}",
        "trace_state": "",
        "name": "SELECT cart",
        "kind": "client",
        "start": iso_time(SPANS[2].start_time_unix_nano, digits=9),
        "start_time_unix_nano": SPANS[2].start_time_unix_nano,
        "end_time_unix_nano": SPANS[2].end_time_unix_nano,
        "duration_ns": 250_500_000,
        "status": "error",
        "status_code": 2,
        "status_message": "deadlock\ndetected",
        "error": True,
        "service": "cart-db",
        "attributes": {},
        "events": [
            {"time_unix_nano": NOW, "name": "exception", "attributes": {"exception.type": "Deadlock"}}
        ],
        "links": [],
        "resource": DB_RESOURCE,
        "scope_name": "",
        "scope_version": "",
        "depth": 2,
        "orphan": False,
    }


def test_unknown_trace_is_an_error_that_points_to_its_logs(
    traces_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = traces(capsys, "--db", str(traces_db), "--trace-id", "0" * 32)
    assert code == 1 and lines == [] and f"no spans of trace {'0' * 32}" in err
    only_logs = "e5" * 16
    write(traces_db, [LogRecord(NOW, "a lonely log", resource=CART, trace_id=only_logs)])
    code, _, err = traces(capsys, "--db", str(traces_db), "--trace-id", only_logs)
    assert code == 1 and f"it has 1 log record: burnline logs --trace-id {only_logs} --since" in err


def test_logs_of_a_trace_point_to_its_spans(traces_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = logs(capsys, "--db", str(traces_db), "--trace-id", SLOW, "--since", "1h")
    assert code == 0 and bodies(lines) == ["started early", "charging card"]
    assert err == f"4 spans of this trace: burnline traces --trace-id {SLOW} --db {traces_db}\n"
    # Not for --json (kept for machines), nor for a trace without spans.
    _, _, err = logs(capsys, "--db", str(traces_db), "--trace-id", SLOW, "--json")
    assert err == ""
    _, _, err = logs(capsys, "--db", str(traces_db), "--trace-id", "f" * 32)
    assert err.startswith("burnline logs: no records match") and "burnline traces" not in err


def test_traces_on_a_store_from_before_spans_asks_for_an_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    write(path, RECORDS)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE spans")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    code, _, err = traces(capsys, "--db", str(path))
    assert code == 1 and "old store schema (1" in err and "burnline run" in err
    # burnline logs still reads it, --trace-id included.
    code, lines, err = logs(capsys, "--db", str(path), "--trace-id", TRACE, "--since", "3h")
    assert code == 0 and len(lines) == 1 and err == ""


def test_traces_bad_arguments_are_usage_errors(traces_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--min-duration", "fast"], ["--trace-id", "xyz"], ["--since", "soon"], ["--limit", "x"]):
        with pytest.raises(SystemExit) as exc:
            main(["traces", "--db", str(traces_db), *args])
        assert exc.value.code == 2
        assert args[1] in capsys.readouterr().err


def test_traces_store_from_config(
    traces_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, f"  local: {{path: {traces_db}}}\n")
    code, lines, _ = traces(capsys, "-c", str(config), "--errors")
    assert code == 0 and trace_ids(lines) == [SLOW, BROKEN]
    code, _, err = traces(capsys, "--db", str(tmp_path / "nowhere.db"))
    assert code == 1 and "no local store at" in err


def test_recent_traces_query(traces_db: Path) -> None:
    conn = open_reader(traces_db)
    try:
        [slow] = recent_traces(conn, TraceQuery(min_duration_ns=1000 * MS))
    finally:
        conn.close()
    assert (slow.trace_id, slow.span_count, slow.error_count, slow.duration_ns) == (SLOW, 4, 1, 1234 * MS)
    assert (slow.root_name, slow.root_service, slow.has_root) == ("GET /checkout", "checkout", True)


def _stored(span_id: str, parent: str | None, start: int) -> StoredSpan:
    return StoredSpan(
        int(span_id, 16), TRACE, span_id, parent, None, f"s{span_id}", 0, start, start + 1, 1, 0, None, False,
        "svc", None, None, None, None, None, None,
    )  # fmt: skip


def test_span_tree_survives_cycles_and_deep_chains() -> None:
    # 2 and 3 are each other's parent (malformed): both still appear, once.
    cyclic = [_stored("1", None, 0), _stored("2", "3", 1), _stored("3", "2", 2), _stored("4", "4", 3)]
    tree = span_tree(cyclic)
    assert sorted(node.span.span_id for node in tree) == ["1", "2", "3", "4"]
    assert (tree[0].span.span_id, tree[0].depth) == ("1", 0)
    deep = [_stored(f"{i + 1:x}", f"{i:x}" if i else None, i) for i in range(5000)]
    tree = span_tree(deep)
    assert [n.depth for n in tree] == list(range(5000))


def test_siblings_are_ordered_by_start_time() -> None:
    spans = [_stored("1", None, 0), _stored("2", "1", 5), _stored("3", "1", 2), _stored("4", "3", 3)]
    spans.sort(key=lambda s: s.start_time_unix_nano)
    assert [(n.span.span_id, n.depth) for n in span_tree(spans)] == [("1", 0), ("3", 1), ("4", 2), ("2", 1)]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"), (850, "850ns"), (12_500, "12.5µs"), (999_960, "1ms"), (250 * MS, "250ms"),
        (1_234 * MS, "1.23s"), (59_999 * MS, "1m00s"), (125_000 * MS, "2m05s"), (3_720_000 * MS, "1h02m"),
    ],
)  # fmt: skip
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text
