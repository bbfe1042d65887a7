"""Log severity -> OpenTelemetry SeverityNumber, from level fields and from the start of text lines.

Shared by every log input. Each function returns ``(severity_number, severity_text)``, ``(0, "")``
when the value says nothing known. Text levels keep their original spelling as severity_text; numeric
levels get the OpenTelemetry short name (``INFO``), since a bare ``30`` means nothing to a reader.

Names follow the OpenTelemetry log data model's appendix B (syslog, log4j, zap, java.util.logging,
.NET), plus the spellings common loggers print (Python's ``CRITICAL``, log15's ``eror``/``dbug``,
Go slog's ``INFO+2``). Two names are deliberately not alike: syslog's ``crit`` is ERROR2 as the
appendix maps it, while ``critical`` is FATAL because it is the top level of Python and .NET logging,
the loggers that print that spelling.

Numbers (:func:`severity_from_number`) are read only where the scale is unambiguous:
10-99 is pino/bunyan (10 trace ... 60 fatal), 100-899 is Google Cloud Logging (100 DEBUG ... 800
EMERGENCY). 0-9 is left unspecified: syslog says 0 is an emergency, zerolog says 0 is debug and Google
says 0 is DEFAULT, and a wrong guess there would fire error-budget alerts. Syslog numbers are read
only from fields that are syslog by definition (:func:`severity_from_syslog`: journald ``PRIORITY``,
the syslog ``pri``).
"""

from __future__ import annotations

import re
from typing import Any, Final

from collector.core.model import Severity, severity_name

UNKNOWN: Final[tuple[int, str]] = (0, "")

# Plain ints (not the IntEnum) so records carry plain numbers into every encoder.
TRACE: Final = int(Severity.TRACE)
DEBUG: Final = int(Severity.DEBUG)
INFO: Final = int(Severity.INFO)
WARN: Final = int(Severity.WARN)
ERROR: Final = int(Severity.ERROR)
FATAL: Final = int(Severity.FATAL)

# Lower-case level names -> SeverityNumber.
_BY_NAME: Final[dict[str, int]] = {
    "trace": TRACE,
    "finest": TRACE,
    "debug": DEBUG,
    "dbug": DEBUG,
    "dbg": DEBUG,
    "verbose": DEBUG,
    "finer": DEBUG,
    "fine": DEBUG + 1,
    "config": DEBUG + 2,
    "info": INFO,
    "information": INFO,
    "informational": INFO,
    "notice": INFO + 1,
    "warn": WARN,
    "warning": WARN,
    "error": ERROR,
    "err": ERROR,
    "eror": ERROR,
    "severe": ERROR,
    "crit": ERROR + 1,
    "dpanic": ERROR + 1,
    "alert": ERROR + 2,
    "panic": ERROR + 2,
    "critical": FATAL,
    "fatal": FATAL,
    "emerg": FATAL,
    "emergency": FATAL,
}

# Every level name read here, lower case, lowest severity first: the names the status API accepts.
LEVEL_NAMES: Final[tuple[str, ...]] = tuple(_BY_NAME)

# The same names as loggers print them, so the common case is one dict lookup without lower().
_BY_TEXT: Final[dict[str, int]] = {
    spelling: number
    for name, number in _BY_NAME.items()
    for spelling in (name, name.upper(), name.capitalize())
}

# Go slog prints levels between its named ones as NAME+n / NAME-n; its levels sit 4 apart exactly as
# OpenTelemetry's ranges do, so the offset carries over unchanged (slog documents this alignment).
_SLOG_BASES: Final[dict[str, int]] = {
    "debug": DEBUG,
    "info": INFO,
    "warn": WARN,
    "error": ERROR,
}

# Syslog severity 0 (emergency) .. 7 (debug), per the OpenTelemetry appendix B.
_SYSLOG: Final[tuple[int, ...]] = (
    FATAL,
    ERROR + 2,
    ERROR + 1,
    ERROR,
    WARN,
    INFO + 1,
    INFO,
    DEBUG,
)

# Google Cloud Logging LogSeverity / 100: 1 DEBUG .. 8 EMERGENCY.
_GCP: Final[tuple[int, ...]] = (
    0,
    DEBUG,
    INFO,
    INFO + 1,
    WARN,
    ERROR,
    FATAL,
    FATAL + 1,
    FATAL + 2,
)

# pino / bunyan: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal (custom levels in between
# take the range below them).
_PINO: Final[tuple[int, ...]] = (
    TRACE,
    DEBUG,
    INFO,
    WARN,
    ERROR,
    FATAL,
)

_MAX_SEVERITY: Final = 24


def _is_small_number(text: str) -> bool:
    # isdigit() alone accepts "²", which int() refuses.
    return 0 < len(text) <= 3 and text.isascii() and text.isdigit()


def severity_from_text(text: str) -> tuple[int, str]:
    """A level name (``warn``, ``ERROR``, ``Information``, slog ``INFO+2``); text is kept as given."""
    number = _BY_TEXT.get(text)
    if number is not None:
        return number, text
    name = text.strip().lower()
    number = _BY_NAME.get(name)
    if number is not None:
        return number, text
    for sign in ("+", "-"):
        base, found, offset = name.partition(sign)
        if found and offset.isascii() and offset.isdigit() and len(offset) <= 2 and base in _SLOG_BASES:
            shift = int(offset) if sign == "+" else -int(offset)
            return min(max(_SLOG_BASES[base] + shift, 1), _MAX_SEVERITY), text
    return UNKNOWN


_RANGE_STARTS: Final = frozenset(int(level) for level in Severity if level)


def range_start_name(number: int) -> str:
    """``ERROR`` for the first number of a range (17), "" for any other (``crit`` is 18, inside ERROR's
    range): how a minimum severity is written back as a name that reads back to the same number."""
    return severity_name(number) if number in _RANGE_STARTS else ""


def severity_from_number(value: int) -> tuple[int, str]:
    """A numeric level on the pino/bunyan (10-99) or Google Cloud (100-899) scale."""
    if 10 <= value < 100:
        number = _PINO[min(value // 10, 6) - 1]
    elif 100 <= value < 900:
        number = _GCP[value // 100]
    else:
        return UNKNOWN
    return number, severity_name(number)


def severity_from_syslog(value: Any, priority: bool = False) -> tuple[int, str]:
    """A syslog severity 0-7 (int or digit string); with ``priority``, a PRI (facility * 8 + severity)."""
    if type(value) is str and _is_small_number(value):
        value = int(value)
    elif type(value) is not int:
        return UNKNOWN
    if priority:
        if not 0 <= value <= 191:
            return UNKNOWN
        value %= 8
    elif not 0 <= value <= 7:
        return UNKNOWN
    number = _SYSLOG[value]
    return number, severity_name(number)


def severity_from_field(value: Any) -> tuple[int, str]:
    """The value of a generic level field (``level``, ``severity``, ...): a name or a number."""
    kind = type(value)
    if kind is str:
        found = severity_from_text(value)
        if found[0] or not _is_small_number(value):
            return found
        return severity_from_number(int(value))
    if kind is int:
        return severity_from_number(value)
    if kind is float and value.is_integer():
        return severity_from_number(int(value))
    return UNKNOWN


# Level words a line may start with. Upper case alone ("ERROR ..."), or any case when bracketed
# ("[warn]") or followed by a colon ("Error: ..."): a bare lower-case "error" or "info" starts plain
# prose too often to be read as a level.
_WORDS = (
    "TRACE|DEBUG|DBUG|VERBOSE|INFO|NOTICE|WARNING|WARN|ERROR|EROR|ERR|SEVERE|CRITICAL|CRIT"
    "|FATAL|PANIC|ALERT|EMERGENCY|EMERG"
)
_LINE_START = re.compile(
    r"(?:"
    # klog / glog: Lmmdd hh:mm:ss.uuuuuu
    r"(?P<klog>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d{6}\b"
    r"|"
    # an optional leading date-time (log4j, Spring Boot, nginx error log), then the level
    r"(?:\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s+)?"
    rf"(?:\[\s*(?P<bracketed>(?i:{_WORDS}))\s*\]"
    rf"|(?P<upper>{_WORDS})(?=[\s:|\]]|$)"
    rf"|(?P<colon>(?i:{_WORDS})):)"
    r")",
    re.ASCII,
)
_KLOG: Final[dict[str, tuple[int, str]]] = {
    "I": (INFO, "INFO"),
    "W": (WARN, "WARNING"),
    "E": (ERROR, "ERROR"),
    "F": (FATAL, "FATAL"),
}
# logfmt keys are searched for only in the head of a line, where loggers put them.
_LOGFMT_HEAD: Final = 512


def severity_from_line(line: str) -> tuple[int, str]:
    """The level a text line states at its start: ``ERROR ...``, ``[warn] ...``, ``WARNING:root:...``,
    klog's ``E0102 15:04:05.000000 ...``, or a logfmt ``level=error`` / ``lvl=eror`` pair."""
    match = _LINE_START.match(line)
    if match is not None:
        klog = match.group("klog")
        if klog is not None:
            return _KLOG[klog]
        word = match.group("upper") or match.group("bracketed") or match.group("colon")
        return _BY_NAME[word.lower()], word
    return _logfmt_level(line)


def _logfmt_level(line: str) -> tuple[int, str]:
    # A logfmt line starts with key=value; checking that first keeps prose ("set level=debug") out.
    equals = line.find("=", 0, _LOGFMT_HEAD)
    if equals <= 0 or " " in line[:equals]:
        return UNKNOWN
    for key in ("level=", "lvl="):
        at = line.find(key, 0, _LOGFMT_HEAD)
        while at > 0 and line[at - 1] != " ":
            at = line.find(key, at + 1, _LOGFMT_HEAD)
        if at < 0:
            continue
        start = at + len(key)
        end = line.find(" ", start)
        value = line[start:] if end < 0 else line[start:end]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found = severity_from_text(value)
        if found[0]:
            return found
    return UNKNOWN
