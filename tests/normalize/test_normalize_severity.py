"""Severity parsing: level names, numeric scales, syslog numbers and level prefixes of text lines."""

from __future__ import annotations

from typing import Any

import pytest

from collector.normalize.severity import (
    severity_from_field,
    severity_from_line,
    severity_from_number,
    severity_from_syslog,
    severity_from_text,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("trace", 1),
        ("finest", 1),
        ("debug", 5),
        ("DEBUG", 5),
        ("dbug", 5),
        ("verbose", 5),
        ("fine", 6),
        ("config", 7),
        ("info", 9),
        ("INFO", 9),
        ("Info", 9),
        ("Information", 9),
        ("informational", 9),
        ("notice", 10),
        ("warn", 13),
        ("WARNING", 13),
        ("Warning", 13),
        ("error", 17),
        ("err", 17),
        ("eror", 17),
        ("SEVERE", 17),
        ("crit", 18),
        ("dpanic", 18),
        ("alert", 19),
        ("panic", 19),
        ("critical", 21),
        ("CRITICAL", 21),
        ("fatal", 21),
        ("emerg", 21),
        ("Emergency", 21),
        (" warn ", 13),
        ("wArNiNg", 13),
    ],
)
def test_level_names_map_to_otel_ranges_and_keep_their_text(text: str, number: int) -> None:
    assert severity_from_text(text) == (number, text)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("INFO+2", 11),
        ("WARN+1", 14),
        ("DEBUG-4", 1),
        ("ERROR+3", 20),
        ("ERROR+8", 24),  # clamped to FATAL4
        ("DEBUG-8", 1),  # clamped to TRACE
    ],
)
def test_slog_offsets_carry_over_to_otel_numbers(text: str, number: int) -> None:
    assert severity_from_text(text) == (number, text)


@pytest.mark.parametrize("text", ["", "chatty", "INFO+x", "INFO+123", "LOUD+2", "info+", "²", "in fo"])
def test_unknown_level_names_are_unspecified(text: str) -> None:
    assert severity_from_text(text) == (0, "")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10, (1, "TRACE")),
        (20, (5, "DEBUG")),
        (30, (9, "INFO")),
        (35, (9, "INFO")),
        (40, (13, "WARN")),
        (50, (17, "ERROR")),
        (60, (21, "FATAL")),
        (99, (21, "FATAL")),
        (100, (5, "DEBUG")),
        (200, (9, "INFO")),
        (300, (10, "INFO")),
        (400, (13, "WARN")),
        (500, (17, "ERROR")),
        (600, (21, "FATAL")),
        (700, (22, "FATAL")),
        (800, (23, "FATAL")),
        # 0-9 means different things to syslog, zerolog and Google: never guessed.
        (0, (0, "")),
        (3, (0, "")),
        (9, (0, "")),
        (900, (0, "")),
        (-1, (0, "")),
    ],
)
def test_numeric_levels_read_only_on_unambiguous_scales(value: int, expected: tuple[int, str]) -> None:
    assert severity_from_number(value) == expected


@pytest.mark.parametrize(
    ("value", "number"),
    [(0, 21), (1, 19), (2, 18), (3, 17), (4, 13), (5, 10), (6, 9), (7, 5), ("6", 9), ("3", 17)],
)
def test_syslog_severities(value: Any, number: int) -> None:
    assert severity_from_syslog(value)[0] == number


@pytest.mark.parametrize("value", [8, -1, "8", "x", "", True, 3.0, None])
def test_invalid_syslog_severities(value: Any) -> None:
    assert severity_from_syslog(value) == (0, "")


@pytest.mark.parametrize(
    ("value", "number"),
    [(134, 9), ("134", 9), (11, 17), (0, 21), (191, 5), (192, 0), (-1, 0), ("x", 0)],
)
def test_syslog_priority_is_facility_times_eight_plus_severity(value: Any, number: int) -> None:
    assert severity_from_syslog(value, priority=True)[0] == number


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("warn", (13, "warn")),
        ("30", (9, "INFO")),
        (30, (9, "INFO")),
        (30.0, (9, "INFO")),
        (50, (17, "ERROR")),
        (3, (0, "")),
        (30.5, (0, "")),
        (True, (0, "")),
        (None, (0, "")),
        ({"level": "error"}, (0, "")),
        (["error"], (0, "")),
        ("3", (0, "")),
    ],
)
def test_level_fields_accept_names_and_numbers(value: Any, expected: tuple[int, str]) -> None:
    assert severity_from_field(value) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ERROR something broke", (17, "ERROR")),
        ("INFO", (9, "INFO")),
        ("WARN  [main] low disk", (13, "WARN")),
        ("[warn] disk almost full", (13, "warn")),
        ("[ WARN ] disk almost full", (13, "WARN")),
        ("[Error] x", (17, "Error")),
        ("WARNING:root:deprecated call", (13, "WARNING")),
        ("CRITICAL:app:db down", (21, "CRITICAL")),
        ("Error: connection refused", (17, "Error")),
        ("fatal: not a git repository", (21, "fatal")),
        ("E0102 15:04:05.123456       1 reflector.go:138] failed to list", (17, "ERROR")),
        ("I0102 15:04:05.123456       1 server.go:42] serving", (9, "INFO")),
        ("W0102 15:04:05.123456 1 x.go:1] slow", (13, "WARNING")),
        ("F0102 15:04:05.123456 1 x.go:1] boom", (21, "FATAL")),
        ("2024-01-02 15:04:05,123 ERROR [main] c.e.App - failed", (17, "ERROR")),
        ("2024-01-02T15:04:05.123+01:00  INFO 1 --- [main] c.e.App : Started", (9, "INFO")),
        ("2024-01-02T15:04:05Z DEBUG cache miss", (5, "DEBUG")),
        ("2024/01/02 15:04:05 [error] 7#7: *1 open() failed", (17, "error")),
        ('time="2024-01-02T15:04:05Z" level=warning msg="slow query"', (13, "warning")),
        ('t=2024-01-02T15:04:05+0000 lvl=eror msg="x"', (17, "eror")),
        ('level="info" msg=started', (9, "info")),
        ("ts=1 caller=main.go:1 level=debug msg=x", (5, "debug")),
    ],
)
def test_levels_stated_at_the_start_of_a_line(line: str, expected: tuple[int, str]) -> None:
    assert severity_from_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        "error connecting to db",  # lower case prose, no colon
        "info about the request",
        "Errors: 3",
        "ERRORS found",
        "INFORMATION follows",
        "The ERROR was handled",
        "E0102 something",
        "Set log level=debug for module x",  # not a logfmt line
        "a=1 level=chatty",
        "GET /healthz 200",
        "[main] started",
        "[\u017fevere] not ascii",  # LATIN SMALL LONG S: only ASCII case-folds
    ],
)
def test_lines_without_a_leading_level_are_unspecified(line: str) -> None:
    assert severity_from_line(line) == (0, "")
