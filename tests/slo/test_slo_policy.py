"""collector/slo/policy.py: the SRE Workbook alert policy with Sloth's period scaling, and the burn-rate
arithmetic, against Sloth's published numbers (internal/alert/alert_test.go in github.com/slok/sloth)."""

from __future__ import annotations

import math

import pytest

from collector.slo import policy
from collector.slo.policy import AlertCondition, burn_rate, conditions, error_budget_remaining, window_seconds

DAY = 86400.0


def factors(period_days: float) -> list[float]:
    return [c.factor for c in conditions(period_days * DAY)]


def test_30d_is_the_sre_workbook_table() -> None:
    assert conditions(30 * DAY) == [
        AlertCondition("page", "1h", "5m", 14.4, 2.0),
        AlertCondition("page", "6h", "30m", 6.0, 5.0),
        AlertCondition("ticket", "1d", "2h", 3.0, 10.0),
        AlertCondition("ticket", "3d", "6h", 1.0, 10.0),
    ]
    assert conditions() == conditions(30 * DAY)


def test_28d_factors_are_sloths_to_the_last_bit() -> None:
    # Sloth's own expectations, float for float: the rule expressions then match its output exactly.
    assert factors(28) == [13.44, 5.6000000000000005, 2.8000000000000003, 0.9333333333333333]
    assert [round(f, 4) for f in factors(28)] == [13.44, 5.6, 2.8, 0.9333]


@pytest.mark.parametrize("days", [7, 14, 28, 30, 90, 365])
def test_other_periods_scale_by_budget_percentage(days: int) -> None:
    for condition in conditions(days * DAY):
        spent_in_long_window = condition.factor * window_seconds(condition.long_window) / (days * DAY)
        assert spent_in_long_window == pytest.approx(condition.budget_percent / 100)
    # Same windows and budget shares for every period: only the factors move.
    assert [(c.long_window, c.short_window) for c in conditions(days * DAY)] == [
        ("1h", "5m"),
        ("6h", "30m"),
        ("1d", "2h"),
        ("3d", "6h"),
    ]
    assert factors(7)[0] == pytest.approx(3.36)


@pytest.mark.parametrize("period", [2 * DAY, 3600.0, 0.0, -DAY, math.inf, math.nan])
def test_a_period_shorter_than_the_longest_window_is_refused(period: float) -> None:
    with pytest.raises(ValueError, match="at least 3d"):
        conditions(period)


def test_the_shortest_accepted_period_is_the_longest_window() -> None:
    assert factors(3)[-1] == pytest.approx(0.1)


def test_windows_end_with_the_period_named_as_prometheus_names_it() -> None:
    assert policy.WINDOWS == ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    assert policy.windows(30 * DAY) == (*policy.WINDOWS, "30d")
    assert policy.windows(28 * DAY) == (*policy.WINDOWS, "4w")  # Sloth's slo:sli_error:ratio_rate4w
    assert policy.windows(7 * DAY)[-1] == "1w"
    assert policy.windows(3 * DAY) == policy.WINDOWS  # no second "3d"


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("5m", 300), ("30m", 1800), ("1h", 3600), ("2h", 7200), ("6h", 21600), ("1d", DAY), ("3d", 3 * DAY),
     ("30d", 30 * DAY), ("4w", 28 * DAY), ("1h30m", 5400), ("1y", 365 * DAY), ("1500ms", 1.5), ("90s", 90)],
)  # fmt: skip
def test_window_seconds_and_names_round_trip(name: str, seconds: float) -> None:
    assert window_seconds(name) == seconds
    assert window_seconds(policy.window_name(seconds)) == seconds


def test_window_names_follow_prometheus() -> None:
    assert policy.window_name(90) == "1m30s"
    assert policy.window_name(5400) == "1h30m"
    assert policy.window_name(10 * DAY) == "10d"  # weeks only when exact, like model.Duration
    assert policy.window_name(14 * DAY) == "2w"


@pytest.mark.parametrize("bad", ["", "5", "m", "5x", "1m1h", "-5m", "5.5m", " ", "1h 30m"])
def test_window_seconds_refuses_what_is_not_a_prometheus_duration(bad: str) -> None:
    with pytest.raises(ValueError, match="not a window"):
        window_seconds(bad)


def test_burn_rate_is_the_error_ratio_over_the_budget() -> None:
    assert burn_rate(1, 1000, 0.999) == pytest.approx(1.0)
    assert burn_rate(144, 10000, 0.999) == pytest.approx(14.4)
    assert burn_rate(5, 100, 0.99) == pytest.approx(5.0)
    assert burn_rate(100, 100, 0.9) == pytest.approx(10.0)


def test_no_traffic_burns_nothing_and_never_divides_by_zero() -> None:
    assert burn_rate(0, 0, 0.999) == 0.0
    assert burn_rate(5, 0, 0.999) == 0.0  # bad without total: counters read at different instants
    assert burn_rate(0, 1000, 0.999) == 0.0
    assert error_budget_remaining(0, 0, 0.999) == 1.0


def test_counts_out_of_range_are_clamped() -> None:
    assert burn_rate(-3, 100, 0.99) == 0.0
    assert burn_rate(150, 100, 0.99) == pytest.approx(100.0)
    assert burn_rate(math.nan, 100, 0.99) == 0.0
    assert burn_rate(1, math.inf, 0.99) == 0.0


@pytest.mark.parametrize("objective", [0.0, 1.0, 1.5, -0.1, math.nan])
def test_an_objective_without_a_budget_is_an_error_not_a_division_by_zero(objective: float) -> None:
    with pytest.raises(ValueError, match="objective ratio"):
        burn_rate(1, 10, objective)


def test_budget_remaining_goes_negative_when_overspent() -> None:
    assert error_budget_remaining(1, 2000, 0.999) == pytest.approx(0.5)
    assert error_budget_remaining(3, 1000, 0.999) == pytest.approx(-2.0)


def test_a_condition_needs_both_windows_over_the_factor() -> None:
    page = conditions(30 * DAY)[0]
    assert page.holds(14.5, 15.0)
    assert not page.holds(14.5, 14.4)  # strictly greater, as the rules' ">"
    assert not page.holds(100.0, 0.0)  # the problem has stopped: the short window resets the alert
    assert page.threshold(1 - 0.999) == pytest.approx(0.0144)
