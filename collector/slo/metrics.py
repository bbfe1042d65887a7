"""The SLO engine's metrics on the admin ``/metrics``, computed from its state at scrape time.

Nothing is updated per event or per evaluation: the values are read when Prometheus scrapes.

- ``burnline_slo_events_total{slo,service,outcome="good|bad"}``: events counted (a counter that
  survives restarts with the persisted counts); the scale-out rules sum its rate across replicas;
- ``burnline_slo_burn_rate{slo,window}``: (bad/total over the window) / (1 - objective);
- ``burnline_slo_error_budget_remaining{slo}``: 1 untouched, 0 spent, negative overspent;
- ``burnline_slo_objective{slo}``: the objective as a ratio (0.999);
- ``burnline_slo_alert_firing{slo,severity}``: 1 while the page or ticket alert fires;
- ``burnline_slo_late_events_total{slo}``: events older than ``lateness``, not counted.

Two ways out, with the same samples: ``SloMetrics`` is a prometheus-client collector (for a
registry), and ``SloMetrics.exposition_parts()`` writes the text format directly, in parts, which the
admin server sends as they come: ~15 series per SLO make 150,000 lines for 10,000 SLOs, which
prometheus-client's generic writer takes seconds to format and this one a fraction of that.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.slo.engine import SloEngine, SloState

CHUNK = 500  # SLOs written between two yields to the event loop

_HELP = {
    "burnline_slo_events": ("counter", "SLO events counted, by outcome."),
    "burnline_slo_burn_rate": (
        "gauge",
        "Error-budget burn rate over a window: (bad/total) / (1 - objective).",
    ),
    "burnline_slo_error_budget_remaining": (
        "gauge",
        "Fraction of the period's error budget left (1 untouched, negative when overspent).",
    ),
    "burnline_slo_objective": ("gauge", "The SLO objective as a ratio."),
    "burnline_slo_alert_firing": ("gauge", "1 while the SLO's page or ticket alert fires."),
    "burnline_slo_late_events": (
        "counter",
        "Events older than the lateness bound behind the clock: not counted in any window.",
    ),
}


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    """As Prometheus' text format (and prometheus-client) writes a float."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


class SloMetrics(Collector):
    def __init__(self, engine: SloEngine) -> None:
        self.engine = engine

    # -- prometheus-client collector

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        self.engine.advance()
        families = self._families()
        events, burn, budget, objective, firing, late = families
        for state in self.engine.slos.values():
            spec = state.spec
            name = spec.name
            objective.add_metric([name], spec.objective_ratio)
            if not state.counted_in_stream:
                continue
            good, bad = state.lifetime()
            events.add_metric([name, spec.service, "good"], good)
            events.add_metric([name, spec.service, "bad"], bad)
            for window in state.windows.sums:
                burn.add_metric([name, window], state.burn_rate(window))
            budget.add_metric([name], state.budget_remaining())
            for severity, alert in state.alerts.items():
                firing.add_metric([name, severity], 1.0 if alert.firing else 0.0)
            late.add_metric([name], state.late)
        yield from families

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
    ]:
        def counter(name: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(name, _HELP[name][1], labels=labels)

        def gauge(name: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, _HELP[name][1], labels=labels)

        return (
            counter("burnline_slo_events", ["slo", "service", "outcome"]),
            gauge("burnline_slo_burn_rate", ["slo", "window"]),
            gauge("burnline_slo_error_budget_remaining", ["slo"]),
            gauge("burnline_slo_objective", ["slo"]),
            gauge("burnline_slo_alert_firing", ["slo", "severity"]),
            counter("burnline_slo_late_events", ["slo"]),
        )

    # -- direct text exposition

    def exposition(self) -> bytes:
        """The same samples in Prometheus text format 0.0.4, written directly."""
        return "".join(self._pieces()).encode()

    async def exposition_parts(self) -> AsyncIterator[bytes]:
        """As ``exposition``, in parts of up to CHUNK SLOs, giving the event loop back between two:
        10,000 SLOs take a while to write, and the pipelines must not wait that long; and written
        out part by part, their 9MB of text is never held whole."""
        for piece in self._pieces():
            yield piece.encode()
            await asyncio.sleep(0)

    def _pieces(self) -> Iterator[str]:
        self.engine.advance()
        states = list(self.engine.slos.values())
        for family, (kind, help_text) in _HELP.items():
            sample = f"{family}_total" if kind == "counter" else family
            yield f"# HELP {sample} {help_text}\n# TYPE {sample} {kind}\n"
            for start in range(0, len(states), CHUNK):
                lines: list[str] = []
                for state in states[start : start + CHUNK]:
                    if family != "burnline_slo_objective" and not state.counted_in_stream:
                        continue
                    lines.extend(self._lines(family, sample, state))
                if lines:
                    lines.append("")
                    yield "\n".join(lines)

    @staticmethod
    def _lines(family: str, sample: str, state: SloState) -> list[str]:
        spec = state.spec
        slo = f'slo="{_escape(spec.name)}"'
        if family == "burnline_slo_events":
            good, bad = state.lifetime()
            service = f'service="{_escape(spec.service)}"'
            return [
                f'{sample}{{{slo},{service},outcome="good"}} {_number(good)}',
                f'{sample}{{{slo},{service},outcome="bad"}} {_number(bad)}',
            ]
        if family == "burnline_slo_burn_rate":
            return [
                f'{sample}{{{slo},window="{window}"}} {_number(state.burn_rate(window))}'
                for window in state.windows.sums
            ]
        if family == "burnline_slo_error_budget_remaining":
            return [f"{sample}{{{slo}}} {_number(state.budget_remaining())}"]
        if family == "burnline_slo_objective":
            return [f"{sample}{{{slo}}} {_number(spec.objective_ratio)}"]
        if family == "burnline_slo_alert_firing":
            return [
                f'{sample}{{{slo},severity="{severity}"}} {_number(1.0 if alert.firing else 0.0)}'
                for severity, alert in state.alerts.items()
            ]
        return [f"{sample}{{{slo}}} {_number(state.late)}"]
