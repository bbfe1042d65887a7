"""One table of level names: a spelling means the same severity in a record (ingest), in the
``filter`` processor's ``min_severity``, in ``burnline logs --level`` (issue 9 item 4) and in the
status page and API's ``level`` parameter.

The spellings come from collector/normalize/severity.py's own table, so a name added there is
checked here too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

import tests.support  # noqa: F401  (registers the `inject` receiver the config below uses)
from collector.cli import main
from collector.config import parse_config
from collector.core.component import ComponentContext
from collector.core.model import Batch, LogRecord, Severity, Signal
from collector.core.telemetry import Telemetry
from collector.normalize import severity
from collector.normalize.fluent import normalize_fluent
from collector.normalize.fluent_config import FluentNormalizeConfig
from collector.processors.filter import FilterProcessor
from collector.status.store import LEVELS, ParamError, log_query
from collector.status.store_html import LEVEL_CHOICES
from exporters.local.exporter import RetentionConfig, StoreWriter

NAMES: dict[str, int] = dict(severity._BY_NAME)  # the table ingest reads
# Every name as loggers print it: lower, UPPER and Capitalized.
SPELLINGS = sorted({form for name in NAMES for form in (name, name.upper(), name.capitalize())})
# Go slog's offsets from each base name it has, both ways, as slog prints them and lower case.
SLOG_SPELLINGS = sorted(
    f"{form}{sign}{offset}"
    for base in severity._SLOG_BASES
    for form in (base, base.upper())
    for sign in "+-"
    for offset in (1, 2)
)
NOW = 1_795_993_008_000_000_000


def ingested_severity(spelling: str) -> int:
    [record] = normalize_fluent(
        "app", [(NOW, {"log": "something happened", "level": spelling})], FluentNormalizeConfig(), NOW
    )
    return record.severity_number


def filter_processor(spelling: str, tmp_path: Path) -> FilterProcessor:
    config = parse_config(
        {
            "receivers": {"inject": {}},
            "processors": {"filter": {"min_severity": spelling}},
            "exporters": {"capture": {}},
            "service": {
                "pipelines": {
                    "logs": {"receivers": ["inject"], "processors": ["filter"], "exporters": ["capture"]}
                }
            },
        },
        env={},
    )
    ctx = ComponentContext("filter", Telemetry(), str(tmp_path), logging.getLogger("test.filter"))
    return FilterProcessor(config.processors["filter"], ctx)


@pytest.fixture(scope="module")
def every_severity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one record at each SeverityNumber 1-24 (body: the number)."""
    path = tmp_path_factory.mktemp("severity") / "burnline.db"
    writer = StoreWriter(path, RetentionConfig(max_age=0))
    writer.open()
    try:
        writer.write(Signal.LOGS, [LogRecord(NOW + n, str(n), n) for n in range(1, 25)])
    finally:
        writer.close()
    return path


def test_the_table_has_the_names_that_disagreed() -> None:
    # The bug: `crit` was 21 in `burnline logs` and 18 at ingest; the filter refused `warning`.
    assert {"crit", "critical", "warning", "warn", "err", "notice", "emerg"} <= NAMES.keys()


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_spelling_means_one_severity_everywhere(
    spelling: str, tmp_path: Path, every_severity: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    number = NAMES[spelling.lower()]
    assert ingested_severity(spelling) == number

    processor = filter_processor(spelling, tmp_path)
    batch = Batch(Signal.LOGS, [LogRecord(NOW, str(n), n) for n in range(1, 25)], 24)
    kept = processor.process(batch)
    assert kept is not None
    assert [r.severity_number for r in kept.items] == list(range(number, 25))

    assert main(["logs", "--db", str(every_severity), "--since", "2026-01-01T00:00:00Z", "-n", "0",
                 "--json", "--level", spelling]) == 0  # fmt: skip
    shown = [orjson.loads(line)["severity_number"] for line in capsys.readouterr().out.splitlines()]
    assert shown == list(range(number, 25))


@pytest.mark.parametrize("spelling", SLOG_SPELLINGS)
def test_slog_offsets_agree_too(
    spelling: str, tmp_path: Path, every_severity: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    number = ingested_severity(spelling)
    assert number > 0
    assert filter_processor(spelling, tmp_path).config.min_severity == number
    assert main(["logs", "--db", str(every_severity), "--since", "2026-01-01T00:00:00Z", "-n", "0",
                 "--json", "--level", spelling]) == 0  # fmt: skip
    shown = [orjson.loads(line)["severity_number"] for line in capsys.readouterr().out.splitlines()]
    assert shown == list(range(number, 25))


def test_the_status_api_reads_every_name_of_the_table() -> None:
    # The API's level parameter is an enum (OpenAPI): every name of the table, in lower case.
    assert tuple(LEVELS) == tuple(NAMES)
    for name, number in NAMES.items():
        assert ingested_severity(name) == number
        assert log_query({"level": name}, NOW).min_severity == number


def test_the_status_page_offers_the_severity_ranges() -> None:
    offered = [choice for choice in LEVEL_CHOICES if choice]
    assert offered == [level.name.lower() for level in Severity if level > Severity.TRACE]
    for choice in offered:
        assert NAMES[choice] == Severity[choice.upper()]


def test_unknown_names_are_refused_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ingested_severity("loud") == 0
    with pytest.raises(SystemExit) as exc:
        main(["logs", "--db", str(tmp_path / "x.db"), "--level", "loud"])
    assert exc.value.code == 2 and "'loud' is not a level" in capsys.readouterr().err
    from collector.config import ConfigError

    with pytest.raises(ConfigError, match=r"processors\.filter\.min_severity: unknown severity 'loud'"):
        filter_processor("loud", tmp_path)
    with pytest.raises(ParamError, match="'loud' is not a level"):
        log_query({"level": "loud"}, NOW)
