"""The SLO alert policy: burn-rate windows, the burn-rate formula and the multiwindow, multi-burn-rate
alert conditions of the Google SRE Workbook (chapter 5, "Alerting on SLOs"), with factors scaled to
the SLO period exactly as Sloth (github.com/slok/sloth) scales them.

Sloth ships window tables for 30d and 28d periods (internal/alert/windows/google-{30d,28d}.yaml):

    severity  speed  budget consumed  long window  short window
    page      quick   2 %              1h           5m
    page      slow    5 %              6h           30m
    ticket    quick  10 %              1d           2h
    ticket    slow   10 %              3d           6h

and turns each row into a burn-rate factor with ``budget% * period / long window`` (window.go,
``getBurnRateFactor``): for 30d that is 14.4, 6, 3 and 1; for 28d 13.44, 5.6, 2.8 and 0.9333. burnline
uses the same rows for every period and the same formula, so 30d and 28d give Sloth's numbers and any
other period (7d, 14d, 90d …) gets factors meaning the same thing: "this fraction of the period's
error budget would be gone within the long window" (Sloth itself refuses such periods unless given a
custom windows catalogue, whose shares are the author's choice). A period shorter than the longest
window (3d) cannot be judged by these windows and is refused.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Literal

Severity = Literal["page", "ticket"]

# Every burn-rate window an SLO is evaluated over, shortest first; the SLO period comes on top.
WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

DEFAULT_PERIOD_SECONDS = 30 * 86400.0

_UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}
# A Prometheus duration: units largest first, each at most once ("1d12h", "90m", "4w").
_PROM_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_PROM_DURATION_UNITS = ("y", "w", "d", "h", "m", "s", "ms")


@dataclass(frozen=True)
class BudgetConsumption:
    """One row of the policy: page or ticket when ``budget_percent`` of the period's error budget
    would be spent within ``long_window`` (and the short window confirms it is still happening)."""

    severity: Severity
    budget_percent: float
    long_window: str
    short_window: str


# The SRE Workbook's defaults, as in Sloth's google-30d.yaml and google-28d.yaml.
POLICY: tuple[BudgetConsumption, ...] = (
    BudgetConsumption("page", 2.0, "1h", "5m"),
    BudgetConsumption("page", 5.0, "6h", "30m"),
    BudgetConsumption("ticket", 10.0, "1d", "2h"),
    BudgetConsumption("ticket", 10.0, "3d", "6h"),
)


@dataclass(frozen=True)
class AlertCondition:
    """True when the burn rate over ``long_window`` and over ``short_window`` both exceed ``factor``.

    The long window makes the alert significant (that much budget is really gone); the short one
    makes it reset soon after the problem stops instead of hours later."""

    severity: Severity
    long_window: str
    short_window: str
    factor: float
    budget_percent: float = 0.0

    def threshold(self, error_budget_ratio: float) -> float:
        """The error ratio above which this condition holds (what Prometheus rules compare with)."""
        return self.factor * error_budget_ratio

    def holds(self, long_burn_rate: float, short_burn_rate: float) -> bool:
        return long_burn_rate > self.factor and short_burn_rate > self.factor


@functools.lru_cache(maxsize=1024)
def window_seconds(name: str) -> float:
    """Seconds in a Prometheus duration such as '5m', '1d', '4w' or '1h30m'; ValueError otherwise."""
    match = _PROM_DURATION.match(name.strip()) if isinstance(name, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f"{name!r} is not a window (use a Prometheus duration such as '5m', '1h', '30d')")
    return sum(
        int(value) * _UNIT_SECONDS[unit]
        for value, unit in zip(match.groups(), _PROM_DURATION_UNITS, strict=True)
        if value is not None
    )


def window_name(seconds: float) -> str:
    """A duration as Prometheus (and so Sloth) prints it: 300 -> '5m', 30 days -> '30d', 28 days -> '4w'.

    Years and weeks are used only when they divide the duration exactly, as in Prometheus'
    model.Duration.String(), so rule names match the ones Sloth generates (`ratio_rate4w` for 28d)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a window must be a positive duration, not {seconds!r}")
    millis = round(seconds * 1000)
    if millis == 0:
        raise ValueError(f"a window must be at least 1ms, not {seconds!r}")
    parts = []
    for unit, exact_only in (("y", True), ("w", True), ("d", False), ("h", False), ("m", False)):
        unit_millis = round(_UNIT_SECONDS[unit] * 1000)
        if exact_only and millis % unit_millis:
            continue
        if count := millis // unit_millis:
            parts.append(f"{count}{unit}")
            millis -= count * unit_millis
    if millis >= 1000:
        parts.append(f"{millis // 1000}s")
        millis %= 1000
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


def period_window(period_seconds: float) -> str:
    """The window name of an SLO period ('30d', '4w' for 28 days, '1w' for 7)."""
    return window_name(period_seconds)


def windows(period_seconds: float) -> tuple[str, ...]:
    """Every window an SLO with this period is evaluated over: WINDOWS, then the period itself."""
    period = period_window(period_seconds)
    if any(window_seconds(w) == period_seconds for w in WINDOWS):
        return WINDOWS
    return (*WINDOWS, period)


def _describe(seconds: float) -> str:
    return window_name(seconds) if math.isfinite(seconds) and seconds >= 0.001 else repr(seconds)


def check_period(period_seconds: float) -> None:
    """ValueError unless the period is long enough for every window of the policy."""
    longest = max(window_seconds(row.long_window) for row in POLICY)
    if not math.isfinite(period_seconds) or period_seconds < longest:
        raise ValueError(
            f"an SLO period must be at least {window_name(longest)} (the longest alert window), "
            f"not {_describe(period_seconds)}"
        )


def burn_factor(budget_percent: float, period_seconds: float, long_window: str) -> float:
    """How many times faster than "exactly on budget" errors must arrive to spend ``budget_percent``
    of the period's budget within ``long_window``. Computed in Sloth's order of operations
    (percent * period hours / 100 / window hours) so the floats, and the rules, come out identical."""
    period_hours = period_seconds / 3600
    return budget_percent * period_hours / 100 / (window_seconds(long_window) / 3600)


def conditions(period_seconds: float = DEFAULT_PERIOD_SECONDS) -> list[AlertCondition]:
    """The page and ticket conditions for an SLO period: [page quick, page slow, ticket quick,
    ticket slow]. For 30d: burn > 14.4 over 1h and 5m, > 6 over 6h and 30m (page); > 3 over 1d and 2h,
    > 1 over 3d and 6h (ticket). Other periods scale as documented at the top of this module."""
    return list(_conditions(period_seconds))


@functools.lru_cache(maxsize=256)
def _conditions(period_seconds: float) -> tuple[AlertCondition, ...]:
    # Few distinct periods, many SLOs (and engine evaluations): computed once per period.
    check_period(period_seconds)
    return tuple(
        AlertCondition(
            severity=row.severity,
            long_window=row.long_window,
            short_window=row.short_window,
            factor=burn_factor(row.budget_percent, period_seconds, row.long_window),
            budget_percent=row.budget_percent,
        )
        for row in POLICY
    )


def error_ratio(bad: float, total: float) -> float:
    """bad / total in [0, 1]; 0 without traffic.

    Counts that come from separate counters (a metric SLI's good and total read at slightly different
    instants) can make bad < 0 or bad > total for a moment: clamped rather than reported as < 0 % or
    > 100 % errors."""
    if not (math.isfinite(bad) and math.isfinite(total)) or total <= 0:
        return 0.0
    return min(max(bad, 0.0), total) / total


def _budget(objective_ratio: float) -> float:
    if not (math.isfinite(objective_ratio) and 0.0 < objective_ratio < 1.0):
        raise ValueError(f"an objective ratio must be between 0 and 1 (exclusive), not {objective_ratio!r}")
    return 1.0 - objective_ratio


def burn_rate(bad: float, total: float, objective_ratio: float) -> float:
    """(bad / total) / (1 - objective): 1 spends the error budget exactly over the period, 14.4 spends
    a 30-day budget in about 2 days. No traffic burns nothing (0). ValueError for an objective ratio
    outside (0, 1), whose budget would be zero or negative."""
    return error_ratio(bad, total) / _budget(objective_ratio)


def error_budget_remaining(bad: float, total: float, objective_ratio: float) -> float:
    """The fraction of the period's error budget left, given the period's counts: 1 untouched, 0 spent,
    negative when overspent (1 - the period burn rate, as Sloth's
    slo:period_error_budget_remaining:ratio)."""
    return 1.0 - burn_rate(bad, total, objective_ratio)
