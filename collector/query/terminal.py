"""Colours and aligned columns for people at a terminal; plain, stable text for pipes and files.

``--color auto`` (the default) colours only when the output is a terminal and ``NO_COLOR`` is unset
or empty (https://no-color.org); ``always`` and ``never`` override both. Columns are aligned when the
output is a terminal; piped output keeps the fixed two-space separated format scripts parse.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

_RESET = "\x1b[0m"
_SGR = {
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
    "red": "\x1b[31m",
    "bold_red": "\x1b[1;31m",
    "yellow": "\x1b[33m",
    "green": "\x1b[32m",
    "cyan": "\x1b[36m",
    "magenta": "\x1b[35m",
}
# By the level's first word (severity_name): FATAL stands out most, TRACE/DEBUG recede.
_LEVEL_STYLE = {
    "TRACE": "dim",
    "DEBUG": "dim",
    "INFO": "green",
    "WARN": "yellow",
    "ERROR": "red",
    "FATAL": "bold_red",
}
COLOR_CHOICES = ("auto", "always", "never")
# Widest a padded column grows: a very long service name must not push every body off screen.
MAX_COLUMN = 32


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def use_color(choice: str, stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether to colour output to ``stream`` for ``--color choice``."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return is_terminal(stream) and not (os.environ if env is None else env).get("NO_COLOR")


@dataclass(slots=True)
class Style:
    """How to render text columns: with colours or not, aligned or not.

    Aligned columns only ever widen (up to :data:`MAX_COLUMN`), so lines printed later by
    ``--follow`` stay aligned with earlier ones.
    """

    color: bool = False
    align: bool = False
    widths: dict[str, int] = field(default_factory=dict)

    def paint(self, text: str, style: str) -> str:
        if not self.color or not text or style not in _SGR:
            return text
        return f"{_SGR[style]}{text}{_RESET}"

    def level(self, text: str, width: int = 5) -> str:
        """A level name, padded to ``width`` (before colouring, so escapes do not count)."""
        padded = f"{text:<{width}}"
        return self.paint(padded, _LEVEL_STYLE.get(text.rstrip("0123456789"), ""))

    def widen(self, name: str, values: list[str]) -> None:
        """Makes column ``name`` wide enough for ``values`` (when aligning; never narrower)."""
        if self.align and values:
            widest = min(MAX_COLUMN, max(len(v) for v in values))
            self.widths[name] = max(self.widths.get(name, 0), widest)

    def column(self, name: str, text: str) -> str:
        """``text`` padded to column ``name``'s width (when aligning)."""
        width = self.widths.get(name, 0) if self.align else 0
        return f"{text:<{width}}" if width else text
