"""The small condition language of SLI ``match`` and ``bad`` maps, parsed once when a spec loads.

A value is a comparison: ``">=500"``, ``">0.3"``, ``"<=2"``, ``"<1"`` (numeric), ``"==x"``, ``"!=x"``
(equality of the text), ``"=~regex"``, ``"!~regex"`` (anchored, as in PromQL), or a plain value
(equality: ``checkout``, ``500``, ``true``). A number compares with a number or a numeric string;
a value that is not a number never satisfies a numeric comparison.

Severities compare by OpenTelemetry SeverityNumber: ``">=error"`` is 17 and above (ERROR, ERROR2 …
FATAL4), ``"==warn"`` or plain ``warn`` the WARN range (13-16); names are read as
collector/normalize/severity.py reads log levels (``warning``, ``err``, ``critical`` …).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from collector.normalize.severity import severity_from_text

_NUMERIC_OPS = (">=", "<=", ">", "<")
_TEXT_OPS = ("==", "!=", "=~", "!~")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


@dataclass(frozen=True, slots=True)
class Comparison:
    """One parsed condition on one value."""

    op: str  # ">=", "<=", ">", "<", "==", "!=", "=~", "!~"
    operand: str
    number: float | None = None
    pattern: re.Pattern[str] | None = None

    def test(self, value: Any) -> bool:
        """``value`` None means absent: only ``!=`` and ``!~`` hold for it."""
        if value is None:
            return self.op in {"!=", "!~"}
        op = self.op
        if op in _NUMERIC_OPS:
            number = _number(value)
            if number is None:
                return False
            assert self.number is not None
            if op == ">=":
                return number >= self.number
            if op == ">":
                return number > self.number
            if op == "<=":
                return number <= self.number
            return number < self.number
        if op == "==":
            return _text(value) == self.operand
        if op == "!=":
            return _text(value) != self.operand
        assert self.pattern is not None
        found = self.pattern.fullmatch(_text(value)) is not None
        return found if op == "=~" else not found


def parse_comparison(value: Any) -> Comparison:
    """A condition value -> Comparison; ValueError naming the problem."""
    if isinstance(value, dict | list) or value is None:
        raise ValueError(f"a condition is a value or a comparison such as '>=500', not {value!r}")
    if not isinstance(value, str):
        return Comparison("==", _text(value))
    text = value.strip()
    for op in _TEXT_OPS + _NUMERIC_OPS:
        if text.startswith(op):
            operand = text[len(op) :].strip()
            if op in _NUMERIC_OPS:
                number = _number(operand)
                if number is None:
                    raise ValueError(f"{value!r}: {op} needs a number (e.g. '{op}500')")
                return Comparison(op, operand, number=number)
            if op in ("=~", "!~"):
                try:
                    return Comparison(op, operand, pattern=re.compile(operand))
                except re.error as exc:
                    raise ValueError(f"{value!r}: invalid regex ({exc})") from None
            return Comparison(op, operand)
    return Comparison("==", value)


@dataclass(frozen=True, slots=True)
class SeverityCondition:
    """A comparison of a log record's SeverityNumber with a level's range."""

    op: str
    low: int  # first number of the level's range (ERROR = 17)

    def test(self, number: int) -> bool:
        if number <= 0:  # unspecified severity: never bad, never good-by-level
            return self.op == "!="
        high = self.low + 3
        if self.op == ">=":
            return number >= self.low
        if self.op == ">":
            return number > high
        if self.op == "<=":
            return number <= high
        if self.op == "<":
            return number < self.low
        inside = self.low <= number <= high
        return inside if self.op == "==" else not inside


def parse_severity(value: Any) -> SeverityCondition:
    """``">=error"``, ``"warn"``, ``"<info"`` … -> SeverityCondition; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"severity takes a level such as '>=error', not {value!r}")
    text = value.strip()
    op = next((o for o in (">=", "<=", "==", "!=", ">", "<") if text.startswith(o)), "==")
    name = text[len(op) :].strip() if text.startswith(op) else text
    number, _ = severity_from_text(name)
    if not number:
        raise ValueError(
            f"severity {value!r}: {name!r} is not a level (trace, debug, info, warn, error, fatal, ...)"
        )
    # A level's range starts at 1, 5, 9, 13, 17 or 21: compare with the range, not its exact number.
    return SeverityCondition(op, ((number - 1) // 4) * 4 + 1)
