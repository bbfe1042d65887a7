"""`burnline logs`: querying the local store through the command line."""

from __future__ import annotations

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
from typing import Any

import orjson
import pytest

from collector.cli import main
from collector.model import LogRecord, Severity, Signal
from exporters.local import SCHEMA_VERSION, RetentionConfig, StoreWriter
from exporters.local_query import LogQuery, StoredLog, follow, iso_time, newer, open_reader, recent

NOW = time.time_ns()
MIN = 60 * 1_000_000_000
TRACE = "5b8efff798038103d269b633813fc60c"
REPO = Path(__file__).resolve().parents[1]


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


def write(path: Path, records: list[LogRecord]) -> None:
    writer = StoreWriter(path, RetentionConfig())
    writer.open()
    try:
        writer.write(Signal.LOGS, records)
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
    for args in (["--level", "loud"], ["--since", "yesterday"], ["--trace-id", "xyz"], ["--limit", "-3"]):
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
        assert started.wait(10)
        late = LogRecord(NOW - 600 * MIN, "late but new", Severity.ERROR)
        write(db, [late, LogRecord(NOW, "quiet", Severity.INFO), LogRecord(NOW, "loud", Severity.WARN)])
        deadline = time.monotonic() + 10
        while len(emitted) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emitted == ["late but new", "loud"]
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


@pytest.fixture
def follower(db: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "logs", "--db", str(db), "-f", "--interval", "50ms", "-n", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
    assert "Über-crash" in lines.get(timeout=30)  # the most recent record first
    write(db, [LogRecord(time.time_ns(), "arrived while following", Severity.INFO, resource=CART)])
    assert "arrived while following" in lines.get(timeout=10)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
