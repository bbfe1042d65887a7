"""``burnline logs`` and ``burnline traces``: query the local store that the ``local`` exporter writes.

Text output is one line per record (per trace for ``burnline traces``), oldest to newest of the most
recent matches; ``--json`` prints one JSON object a line with every stored field. ``burnline traces
--trace-id ID`` prints one trace as a tree of spans.

Logs and spans correlate by trace id: ``burnline logs --trace-id ID`` and ``burnline traces
--trace-id ID`` each point to the other when the store has both, and the span tree shows each span's
events and the trace's log records under the span that wrote them.

When nothing matches, a line on stderr says so, naming the store, the time range and the filters
(exit status 0: an empty result is an answer, not a failure). Level names are the ones ingest reads
(``collector/normalize/severity.py``), so ``--level crit`` means what a record's ``crit`` means.
"""

from __future__ import annotations

import argparse
from typing import Any

from collector.config.types import parse_duration
from collector.query.filters import parse_level, parse_min_duration, parse_since, parse_trace_id
from collector.query.logs import run
from collector.query.terminal import COLOR_CHOICES
from collector.query.traces import run_traces
from exporters.local.exporter import DEFAULT_FILE_NAME


def _limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 shows every match)")
    return int(text)


def _interval(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the poll interval must be above 0")
    return seconds


_TIMES = """\
times (--since, --until): a duration ago (15m, 2h, 7d), now, today, yesterday, a clock time today
(19:00), or a date/time (2026-12-04, 2026-12-04 19:00, 2026-12-04T19:00:00Z). A time without a zone
is local time (the TZ variable's zone, else the system's); output times are UTC.
"""

_EXIT = """\
exit status: 0 when the query ran, whether or not records matched (no match is said on stderr,
naming the store, the time range and the filters); 1 when the store cannot be read; 2 for bad
arguments. Colours and aligned columns on a terminal; none when piped, with NO_COLOR set or with
--color never.
"""

_EPILOG = (
    """\
examples:
  burnline logs                                 the last 100 records of the last hour
  burnline logs --service checkout --level warn warnings and errors of one service
  burnline logs --grep timeout --since 15m      records whose body contains "timeout"
  burnline logs --since yesterday --until today every record of yesterday (local time)
  burnline logs --namespace shop --pod 'checkout-*' --since 19:00
                                                one namespace's checkout pods since 19:00 today
  burnline logs --trace-id 5b8efff798038103d269b633813fc60c
                                                the records of one trace (its spans: burnline traces
                                                --trace-id 5b8efff798038103d269b633813fc60c)
  burnline logs -f --level error                follow new errors (Ctrl-C stops)
  burnline logs --json --limit 0 --since 1d     everything of the last day, one JSON a line

"""
    + _TIMES
    + "\n"
    + _EXIT
)

_TRACES_EPILOG = (
    """\
examples:
  burnline traces                               the last 20 traces of the last hour
  burnline traces --service checkout --errors   traces in which a checkout span failed
  burnline traces --min-duration 250ms --since 15m
                                                slow traces of the last 15 minutes
  burnline traces --trace-id 5b8efff798038103d269b633813fc60c
                                                one trace as a tree of spans (its logs: burnline logs
                                                --trace-id 5b8efff798038103d269b633813fc60c)
  burnline traces --json --limit 0 --since 1d   every trace of the last day, one JSON a line

A trace line: start time, trace id, duration (first span start to last span end), span count, ERROR
when a span failed (status ERROR, or a 5xx answer of a server span), the root span's service and name.
The tree of one trace shows each span's events and the trace's log records under the span that wrote
them (records without a stored span after the tree).

"""
    + _TIMES
    + "\n"
    + _EXIT.replace("records matched", "traces matched")
)


def _add_store_options(p: argparse.ArgumentParser) -> None:
    where = p.add_argument_group("store")
    where.add_argument(
        "--db",
        metavar="PATH",
        help="the store file (default: the -c config's local exporter, "
        f"else $BURNLINE_DATA_DIR/{DEFAULT_FILE_NAME}, else ./data/{DEFAULT_FILE_NAME})",
    )
    where.add_argument(
        "-c",
        "--config",
        metavar="CONFIG",
        help="take the store path from this config file (only the local exporter's path and "
        "service.data_dir are read, so variables used elsewhere need not be set)",
    )


def _add_selection_options(match: argparse._ArgumentGroup, what: str) -> None:
    match.add_argument(
        "--since",
        default="1h",
        type=parse_since,
        metavar="WHEN",
        help=f"{what} at or after this time (default: 1h, an hour ago); see times below",
    )
    match.add_argument(
        "--until", type=parse_since, metavar="WHEN", help=f"{what} before this time (default: no end)"
    )
    match.add_argument(
        "--namespace", metavar="NS", help="only this Kubernetes namespace (k8s.namespace.name)"
    )
    match.add_argument(
        "--pod",
        metavar="POD",
        help="only this pod (k8s.pod.name); * and ? match any text, as in 'checkout-*'",
    )


def _add_color_option(out: argparse._ArgumentGroup) -> None:
    out.add_argument(
        "--color",
        choices=COLOR_CHOICES,
        default="auto",
        help="colour the text output: auto (on a terminal unless NO_COLOR is set), always, never",
    )


def add_parser(subparsers: Any) -> None:
    """Adds the ``logs`` and ``traces`` subcommands to burnline's command line."""
    _add_logs_parser(subparsers)
    _add_traces_parser(subparsers)


def _add_logs_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "logs",
        help="query recent logs in the local store",
        description="Shows log records from the local store (the `local` exporter's SQLite file).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_store_options(p)
    match = p.add_argument_group("filters")
    match.add_argument("-s", "--service", help="only this service (resource service.name)")
    match.add_argument(
        "-l",
        "--level",
        "--min-level",
        dest="level",
        type=parse_level,
        metavar="LEVEL",
        help="this severity and above: trace, debug, info, warn, error, fatal, or any level name ingest "
        "reads (warning, notice, crit, critical, ...) or a severity number 1-24",
    )
    match.add_argument("-g", "--grep", metavar="TEXT", help="body contains TEXT (case-insensitive)")
    _add_selection_options(match, "records")
    match.add_argument(
        "--trace-id",
        type=parse_trace_id,
        metavar="ID",
        help="only records of this trace (its spans: burnline traces --trace-id ID)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "-n",
        "--limit",
        default=100,
        type=_limit,
        metavar="N",
        help="the most recent N matches (default: 100; 0: all)",
    )
    out.add_argument("--json", action="store_true", help="one JSON object a line, with every field")
    out.add_argument(
        "-f", "--follow", action="store_true", help="then keep printing new records (Ctrl-C stops)"
    )
    out.add_argument(
        "--interval",
        default=1.0,
        type=_interval,
        metavar="DURATION",
        help="how often --follow looks for new records (default: 1s)",
    )
    _add_color_option(out)
    p.set_defaults(func=run)


def _add_traces_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "traces",
        help="query recent traces in the local store",
        description="Lists recent traces from the local store (the `local` exporter's SQLite file), or "
        "shows one trace as a tree of spans.",
        epilog=_TRACES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_store_options(p)
    one = p.add_argument_group("one trace")
    one.add_argument(
        "--trace-id",
        type=parse_trace_id,
        metavar="ID",
        help="show this trace as a tree of spans, with durations and status (list filters do not apply)",
    )
    match = p.add_argument_group(
        "filters", "a trace is listed when one of its spans matches every filter but --min-duration"
    )
    match.add_argument("-s", "--service", help="with a span of this service (resource service.name)")
    _add_selection_options(match, "with a span started")
    match.add_argument(
        "--errors",
        action="store_true",
        help="with a failed span (status ERROR, or a 5xx answer of a server span)",
    )
    match.add_argument(
        "--min-duration",
        type=parse_min_duration,
        metavar="DURATION",
        help="only traces that lasted at least this long (250ms, 1.5s), first span start to last span end",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "-n",
        "--limit",
        default=20,
        type=_limit,
        metavar="N",
        help="the N most recent traces (default: 20; 0: all)",
    )
    out.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line: per trace, or per span (every field) with --trace-id",
    )
    _add_color_option(out)
    p.set_defaults(func=run_traces)
