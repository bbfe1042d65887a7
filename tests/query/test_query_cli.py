"""`burnline logs` / `burnline traces` as issue 10 asks: the store from a config whose other variables
are unset, "no records match", --until/--namespace/--pod, local times, colours on a terminal, and span
events and logs in the span tree. Through the real command line (in-process `main`, or a process
where the terminal or TZ matters)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import tests.support  # noqa: F401  (registers the `inject` receiver the configs below use)
from collector.cli import main
from collector.core.model import LogRecord, Severity
from collector.query import traces as local_query
from collector.query.format import iso_time
from tests.query.test_local_query import (
    CART,
    CHECKOUT,
    DB_RESOURCE,
    MIN,
    MS,
    NOW,
    RECORDS,
    SLOW,
    SPANS,
    TRACE_LOGS,
    bodies,
    clock_at_now,  # noqa: F401  (autouse: the in-process CLI's clock is the data's NOW)
    write,
)

REPO = Path(__file__).resolve().parents[2]
LEDGER = {"service.name": "ledger", "k8s.namespace.name": "payments", "k8s.pod.name": "ledger-0"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "burnline.db"
    write(path, [*RECORDS, LogRecord(NOW - 2 * MIN, "booked", Severity.INFO, resource=LEDGER)])
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """burnline as a separate process (for TZ and terminals, which belong to a process)."""
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], check=False,
        cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# The store from a config (case 6)

PROD = """\
receivers:
  inject: {{}}
exporters:
  elasticsearch:
    endpoints: [https://es.example:9200]
    api_key: ${{BURNLINE_TEST_UNSET_ES_API_KEY}}
  local:
    {local}
service:
  data_dir: ${{BURNLINE_TEST_DATA:-./data}}
  admin: {{endpoint: "${{BURNLINE_TEST_UNSET_ADMIN}}"}}
  pipelines:
    logs: {{receivers: [inject], exporters: [elasticsearch, local]}}
"""


def test_store_from_a_config_whose_other_variables_are_unset(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BURNLINE_TEST_UNSET_ES_API_KEY", raising=False)
    prod = tmp_path / "prod.yaml"
    prod.write_text(PROD.format(local="path: ${BURNLINE_TEST_STORE_DIR}/burnline.db"))
    monkeypatch.setenv("BURNLINE_TEST_STORE_DIR", str(db.parent))
    # `run` would refuse this file (the ES key is unset); the query needs only the store's path.
    assert main(["validate", "-c", str(prod)]) == 1
    assert "BURNLINE_TEST_UNSET_ES_API_KEY is not set" in capsys.readouterr().err
    code, lines, err = run(capsys, "logs", "-c", str(prod), "--service", "cart")
    assert (code, err) == (0, "") and len(lines) == 3
    code, _, err = run(capsys, "traces", "-c", str(prod))
    assert code == 0 and "no traces match" in err
    # Without a path: burnline.db in service.data_dir, its variable substituted.
    prod.write_text(PROD.format(local="retention: {max_age: 1d}"))
    monkeypatch.setenv("BURNLINE_TEST_DATA", str(db.parent))
    code, lines, _ = run(capsys, "logs", "-c", str(prod), "--service", "cart")
    assert code == 0 and len(lines) == 3
    # A variable the store's path does need is still an error naming it.
    prod.write_text(PROD.format(local="path: ${BURNLINE_TEST_STORE_DIR}/burnline.db"))
    monkeypatch.delenv("BURNLINE_TEST_STORE_DIR")
    code, lines, err = run(capsys, "logs", "-c", str(prod))
    assert code == 1 and lines == []
    assert err == (
        f"burnline logs: {prod}: exporters.local.path: environment variable BURNLINE_TEST_STORE_DIR is not "
        "set (write ${BURNLINE_TEST_STORE_DIR:-default} to give a default)\n"
    )


# ---------------------------------------------------------------------------------------------------
# Saying that nothing matched (case 10)

SINCE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_no_match_is_said_on_stderr_with_the_store_and_the_range(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = run(capsys, "logs", "--db", str(db), "--service", "nosuch")
    assert code == 0 and lines == []
    assert re.fullmatch(
        rf"burnline logs: no records match \(store {re.escape(str(db))}, since {SINCE}, service=nosuch\);"
        r" no record of service 'nosuch' at all\n",
        err,
    ), err
    code, lines, err = run(capsys, "logs", "--db", str(db), "--json", "--level", "crit", "--grep", "nope",
                           "--since", "2026-01-01T00:00:00Z", "--until", "2026-01-02T00:00:00Z")  # fmt: skip
    assert code == 0 and lines == []  # --json output stays clean: the note is on stderr
    assert err == (
        f"burnline logs: no records match (store {db}, since 2026-01-01T00:00:00.000Z, until "
        "2026-01-02T00:00:00.000Z, min_level=18, grep=nope)\n"
    )
    code, _, err = run(capsys, "logs", "--db", str(db), "--since", "30s")
    assert code == 0 and f"; the newest record is from {iso_time(RECORDS[-1].time_unix_nano)}" in err
    empty = tmp_path / "empty.db"
    write(empty, [])
    _, _, err = run(capsys, "logs", "--db", str(empty))
    assert err.endswith("; the store has no log records yet\n")
    code, lines, err = run(capsys, "traces", "--db", str(db), "--service", "nosuch", "--errors")
    assert code == 0 and lines == []
    assert re.fullmatch(
        rf"burnline traces: no traces match \(store {re.escape(str(db))}, since {SINCE}, service=nosuch,"
        r" errors=yes\)\n",
        err,
    ), err


# ---------------------------------------------------------------------------------------------------
# --until, --namespace, --pod (case 10)


def test_until_ends_the_range(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = run(capsys, "logs", "--db", str(db), "--since", "3h", "--until", "15m")
    assert bodies(lines) == ["old failure", "payment ok", "payment failed: card declined"]
    until = iso_time(RECORDS[1].time_unix_nano, digits=9)  # exclusive: the record at it is not shown
    _, lines, _ = run(capsys, "logs", "--db", str(db), "--since", "3h", "--until", until)
    assert bodies(lines) == ["old failure"]
    code, _, err = run(capsys, "logs", "--db", str(db), "--since", "5m", "--until", "10m")
    assert code == 2 and "is not after --since" in err
    code, _, err = run(capsys, "logs", "--db", str(db), "--until", "5m", "-f")
    assert code == 2 and "--until" in err


def test_namespace_and_pod_select_by_resource(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = run(capsys, "logs", "--db", str(db), "--namespace", "payments")
    assert bodies(lines) == ["booked"]
    _, lines, _ = run(capsys, "logs", "--db", str(db), "--namespace", "shop", "--pod", "cart-55c1")
    assert bodies(lines) == [
        "Cart TIMEOUT talking to redis",
        "cache hit 100% of keys",
        "cache hit 1000 of keys",
    ]
    _, lines, _ = run(capsys, "logs", "--db", str(db), "--pod", "checkout-*", "--level", "error")
    assert [line.split("  ")[3] for line in lines] == [
        "payment failed: card declined",
        RECORDS[-1].body.replace("\x1b", "\\x1b").replace("\n", "\\n"),  # type: ignore[union-attr]
    ]
    _, lines, err = run(capsys, "logs", "--db", str(db), "--pod", "CHECKOUT-*")
    assert lines == [] and "pod=CHECKOUT-*" in err  # names are case-sensitive, as in Kubernetes


def test_traces_take_until_namespace_and_pod(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.db"
    write(path, TRACE_LOGS, SPANS)
    ids = lambda lines: [line.split("  ")[1] for line in lines]  # noqa: E731
    _, lines, _ = run(capsys, "traces", "--db", str(path), "--pod", "db-*")
    assert ids(lines) == [SLOW, "b2" * 16]
    _, lines, _ = run(capsys, "traces", "--db", str(path), "--since", "1h", "--until", "20m")
    assert ids(lines) == [SLOW]
    # One span must match every filter: SLOW's failed span is cart-db's, which has no namespace.
    _, lines, _ = run(capsys, "traces", "--db", str(path), "--namespace", "shop", "--errors")
    assert ids(lines) == ["d4" * 16]


# ---------------------------------------------------------------------------------------------------
# Times without a zone are local; clock times and yesterday (case 10)


def _at(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def test_a_zone_less_time_is_local_time(tmp_path: Path) -> None:
    path = tmp_path / "tz.db"
    utc = ZoneInfo("UTC")
    # 19:00 in Kolkata (UTC+05:30) is 13:30 UTC.
    write(path, [LogRecord(_at(datetime(2026, 12, 4, 13, 29, tzinfo=utc)), "before"),
                 LogRecord(_at(datetime(2026, 12, 4, 13, 31, tzinfo=utc)), "after")])  # fmt: skip
    args = ["logs", "--db", str(path), "-n", "0", "--since", "2026-12-04 19:00"]
    kolkata = cli(*args, env={"TZ": "Asia/Kolkata"})
    assert kolkata.returncode == 0 and bodies(kolkata.stdout.splitlines()) == ["after"]
    utc_run = cli(*args, env={"TZ": "UTC"})
    assert utc_run.stdout == "" and "since 2026-12-04T19:00:00.000Z" in utc_run.stderr
    # A zone in the text wins over TZ.
    zoned = cli(
        "logs", "--db", str(path), "-n", "0", "--since", "2026-12-04T13:30:00Z", env={"TZ": "Asia/Kolkata"}
    )
    assert bodies(zoned.stdout.splitlines()) == ["after"]


def test_clock_time_today_and_yesterday(tmp_path: Path) -> None:
    zone = ZoneInfo("America/New_York")
    today = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = (today - timedelta(hours=12)).replace(hour=0)  # a calendar day back, DST or not
    path = tmp_path / "days.db"
    write(path, [
        LogRecord(_at(yesterday - timedelta(minutes=1)), "the day before"),
        LogRecord(_at(yesterday + timedelta(minutes=1)), "yesterday"),
        LogRecord(_at(today + timedelta(minutes=29)), "today 00:29"),
        LogRecord(_at(today + timedelta(minutes=31)), "today 00:31"),
    ])  # fmt: skip
    env = {"TZ": "America/New_York"}

    def shown(*args: str) -> list[str]:
        done = cli("logs", "--db", str(path), "-n", "0", *args, env=env)
        assert done.returncode == 0, done.stderr
        return bodies(done.stdout.splitlines())

    assert shown("--since", "yesterday") == ["yesterday", "today 00:29", "today 00:31"]
    assert shown("--since", "yesterday", "--until", "today") == ["yesterday"]
    assert shown("--since", "00:30") == ["today 00:31"]
    assert shown("--since", "today", "--until", "00:30:00") == ["today 00:29"]


# ---------------------------------------------------------------------------------------------------
# Colours and aligned columns on a terminal (case 10)


def on_a_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """What burnline prints to a pseudo-terminal (a real tty: isatty() is true in the process)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", *args], cwd=REPO, stdout=follower, stderr=subprocess.PIPE,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if not (k == "NO_COLOR" and env is None)},
    )  # fmt: skip
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(120) == 0
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_colours_and_aligned_columns_on_a_terminal(db: Path) -> None:
    out = on_a_terminal("logs", "--db", str(db), "--since", "3h")
    assert "\x1b[31mERROR\x1b[0m" in out and "\x1b[36mcheckout\x1b[0m" in out
    # The escape sequence inside a record is still shown as text, never sent to the terminal.
    assert "Über-crash in \\x1b[31mred" in out
    plain = ANSI.sub("", out).splitlines()
    assert len(plain) == len(RECORDS) + 1
    # The service column is as wide as the widest name: every body starts at the same column.
    firsts = ["old failure", "payment ok", "payment failed", "Cart TIMEOUT", "cache hit 100%"]
    assert len({line.index(body) for line, body in zip(plain, firsts, strict=False)}) == 1
    assert "  cart      Cart TIMEOUT" in plain[3]  # "cart" padded to len("checkout")

    no_color = on_a_terminal("logs", "--db", str(db), "--since", "3h", env={"NO_COLOR": "1"})
    assert "\x1b[" not in no_color.replace("\\x1b[", "") and no_color == "\n".join(plain) + "\n"
    forced_off = on_a_terminal("logs", "--db", str(db), "--since", "3h", "--color", "never")
    assert forced_off == no_color


def test_no_colours_or_padding_when_piped(db: Path) -> None:
    piped = cli("logs", "--db", str(db), "--since", "3h", env={"NO_COLOR": ""})
    assert "\x1b" not in piped.stdout
    assert "  cart  Cart TIMEOUT" in piped.stdout  # not padded: the stable format scripts read
    forced = cli("logs", "--db", str(db), "--since", "3h", "--color", "always")
    assert "\x1b[31mERROR\x1b[0m" in forced.stdout


# ---------------------------------------------------------------------------------------------------
# Span events and the trace's logs in the span tree (case 10)


def test_span_tree_shows_events_and_logs_under_their_span(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tree.db"
    start = SPANS[0].start_time_unix_nano
    under_db = LogRecord(start + 30 * MS, "lock wait", Severity.WARN, resource=DB_RESOURCE, trace_id=SLOW,
                         span_id=f"{3:016x}", attributes={"lock": "row"})  # fmt: skip
    under_charge = LogRecord(start + 500 * MS, "charged", Severity.INFO, resource=CHECKOUT, trace_id=SLOW,
                             span_id=f"{4:016x}")  # fmt: skip
    elsewhere = LogRecord(start + 2 * MS, "unknown span", Severity.ERROR, resource=CART, trace_id=SLOW,
                          span_id="ffffffffffffffff")  # fmt: skip
    write(path, [under_db, under_charge, elsewhere], SPANS)
    code, lines, _ = run(capsys, "traces", "--db", str(path), "--trace-id", SLOW)
    assert code == 0
    assert lines[3:10] == [
        f"    +20ms   250.5ms  ERROR      SELECT cart  (cart-db, client)  span_id={3:016x}"
        '  status_message="deadlock\\ndetected"',
        "    +30ms            WARN         log: lock wait  (cart-db)  lock=row k8s.pod.name=db-0",
        "  +40m00s                         event: exception  exception.type=Deadlock",
        f"   +400ms     800ms  ok       charge  (checkout, client)  span_id={4:016x}",
        "   +500ms            INFO       log: charged  (checkout)  k8s.namespace.name=shop"
        " k8s.pod.name=checkout-7d9f",
        "log records of this trace without a stored span:",
        "     +2ms            ERROR  log: unknown span  (cart)  k8s.namespace.name=shop"
        " k8s.pod.name=cart-55c1",
    ]
    assert lines[10].startswith(f"3 log records of this trace: burnline logs --trace-id {SLOW}")
    # A trace with very many records shows the first ones and says how to see them all.
    monkeypatch.setattr(local_query, "TREE_LOG_LIMIT", 1)
    _, lines, _ = run(capsys, "traces", "--db", str(path), "--trace-id", SLOW)
    assert sum(" log: " in line for line in lines) == 1
    assert lines[-1].startswith("3 log records of this trace (the first 1 shown): burnline logs")
