"""PromQL instant-vector selectors (``name{label="v", le="0.3"}``), the form metric SLIs are written in.

Only selectors, not expressions: an SLI names the counter series to count, and burnline reads those
series as they pass. The grammar is PromQL's (prometheus/promql/parser): a metric name, optionally
followed by braces holding ``label op "value"`` matchers separated by commas (a trailing comma is
allowed), with ``=``, ``!=``, ``=~`` and ``!~``; the name may instead be given as ``__name__="..."``
inside the braces, or, as Prometheus 3 allows, as a quoted string inside them (``{"http.server.duration"}``).
Strings take double quotes, single quotes or backticks (raw), with Go's escapes in the first two.
Regexes are anchored at both ends, as in PromQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = ("=~", "!~", "!=", "=")
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


class SelectorError(ValueError):
    """A selector that does not parse; the message says where and why."""


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, value: str) -> bool:
        """``value`` is "" for an absent label, as in Prometheus."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector: the metric name and the label matchers (``__name__`` not among them)."""

    text: str
    metric: str
    matchers: tuple[LabelMatcher, ...]

    def label(self, name: str) -> LabelMatcher | None:
        """The first equality matcher on ``name`` (how an SLI names a histogram bucket's ``le``)."""
        for matcher in self.matchers:
            if matcher.name == name and matcher.op == "=":
                return matcher
        return None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, problem: str) -> SelectorError:
        return SelectorError(f"selector {self.text!r}: {problem} at position {self.pos + 1}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def word(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group(0)

    def string(self) -> str:
        quote = self.peek()
        if quote not in ('"', "'", "`"):
            raise self.fail("expected a quoted string")
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated string")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\" and quote != "`":
                if self.pos >= len(self.text):
                    raise self.fail("unterminated string")
                escaped = self.text[self.pos]
                self.pos += 1
                if escaped in _ESCAPES:
                    out.append(_ESCAPES[escaped])
                elif escaped in "xuU":
                    width = {"x": 2, "u": 4, "U": 8}[escaped]
                    digits = self.text[self.pos : self.pos + width]
                    if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                        raise self.fail(f"bad \\{escaped} escape")
                    out.append(chr(int(digits, 16)))
                    self.pos += width
                else:
                    raise self.fail(f"unknown escape \\{escaped}")
            elif char == "\n" and quote != "`":
                raise self.fail("newline inside a string")
            else:
                out.append(char)


def _matcher(name: str, op: str, value: str, reader: _Reader) -> LabelMatcher:
    if op in ("=~", "!~"):
        try:
            return LabelMatcher(name, op, value, re.compile(value))
        except re.error as exc:
            raise reader.fail(f"label {name}: invalid regex {value!r} ({exc})") from None
    return LabelMatcher(name, op, value)


def parse_selector(text: str) -> Selector:
    """Parses one instant-vector selector; SelectorError (a ValueError) says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise SelectorError(
            "a selector must be a non-empty string such as 'http_requests_total{job=\"api\"}'"
        )
    reader = _Reader(text)
    reader.skip_space()
    metric = reader.word(_NAME) or ""
    matchers: list[LabelMatcher] = []
    reader.skip_space()
    if reader.peek() == "{":
        reader.pos += 1
        while True:
            reader.skip_space()
            if reader.peek() == "}":
                reader.pos += 1
                break
            if reader.peek() in ('"', "'", "`"):
                quoted = reader.string()
                reader.skip_space()
                if reader.peek() in (",", "}"):  # a bare quoted metric name (Prometheus 3)
                    if metric:
                        raise reader.fail("the metric name is given twice")
                    metric = quoted
                    name = ""
                else:
                    name = quoted
            else:
                name = reader.word(_LABEL) or ""
                if not name:
                    raise reader.fail("expected a label name")
            if name:
                reader.skip_space()
                op = next((o for o in _OPS if reader.text.startswith(o, reader.pos)), "")
                if not op:
                    raise reader.fail(f"expected one of = != =~ !~ after label {name}")
                reader.pos += len(op)
                reader.skip_space()
                value = reader.string()
                if name == "__name__":
                    if op != "=":
                        raise reader.fail("__name__ must be matched with = (an SLI names one metric)")
                    if metric:
                        raise reader.fail("the metric name is given twice")
                    metric = value
                else:
                    matchers.append(_matcher(name, op, value, reader))
            reader.skip_space()
            if reader.peek() == ",":
                reader.pos += 1
                continue
            if reader.peek() == "}":
                reader.pos += 1
                break
            raise reader.fail("expected , or }")
    reader.skip_space()
    if reader.pos != len(text):
        if reader.peek() in "[(":
            raise reader.fail("only a series selector is allowed here (no range, function or operator)")
        raise reader.fail("unexpected text")
    if not metric:
        raise SelectorError(f'selector {text!r}: no metric name (write name{{...}} or {{__name__="name"}})')
    return Selector(text, metric, tuple(matchers))
