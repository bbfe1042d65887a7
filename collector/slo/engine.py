"""The SLO engine: counts every batch a pipeline passes, evaluates burn rates and alert conditions every
``evaluation_interval``, sends page and ticket alerts to Alertmanager, and persists its counts.

``observe`` runs on the event loop inside the pipeline, after its processors: it reads the batch,
never changes it, and costs a dict lookup per record plus the work of the SLOs that watch the
record's service (see matching.py). Everything else (evaluation, sending, persistence) runs in
background tasks.

Alert lifecycle, as Prometheus' rule manager and notifier do it:

- pending -> firing on the first evaluation where any of the severity's (long AND short window)
  conditions holds (the windows already make the alert significant, so there is no ``for:``);
- a firing alert is sent at once and re-sent every ``resend_delay`` with
  ``endsAt = now + 4 * max(evaluation_interval, resend_delay)``, so Alertmanager resolves it by
  itself if burnline goes away;
- when no condition holds any more the alert is resolved: sent with ``endsAt`` = the resolve time
  and re-sent every ``resend_delay`` for 15 minutes, so an Alertmanager that missed it learns it too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from collector.config.model import AlertingConfig
from collector.core.model import Batch, Signal
from collector.core.tasks import cancel_and_wait
from collector.metrics.delta import DeltaTracker
from collector.slo import policy
from collector.slo.matching import Counts, SloIndex
from collector.slo.spec import SLOSpec
from collector.slo.windows import SloWindows

log = logging.getLogger("burnline.slo")

SEVERITIES: tuple[policy.Severity, ...] = ("page", "ticket")
RESOLVED_RETENTION = 15 * 60.0  # seconds a resolved alert is re-sent (Prometheus' resolvedRetention)


class AlertSink(Protocol):
    def send(self, alerts: list[dict[str, Any]]) -> None: ...


@dataclass(slots=True)
class AlertState:
    severity: policy.Severity
    firing: bool = False
    started_at: float = 0.0
    resolved_at: float = 0.0
    last_sent: float = 0.0
    fired_by: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class SloState:
    """One SLO's spec, counts and alert states."""

    slot: int
    spec: SLOSpec
    windows: SloWindows
    conditions: list[policy.AlertCondition]
    alerts: dict[str, AlertState]
    counted_in_stream: bool
    good_channel: bool  # windows' second channel counts good events (a metric SLI with good:)
    late: float = 0.0
    dirty: bool = False  # counted since the last persist

    def can_fire(self) -> bool:
        """Whether any short window of the alert conditions holds a bad event."""
        sums = self.windows.sums
        if self.good_channel:
            return any(sums[w].total - sums[w].second > 0 for w in _short_windows(self.spec.period))
        return any(sums[w].second > 0 for w in _short_windows(self.spec.period))

    def bad_total(self, window: str) -> tuple[float, float]:
        sums = self.windows.sums[window]
        bad = sums.total - sums.second if self.good_channel else sums.second
        return bad, sums.total

    def burn_rate(self, window: str) -> float:
        bad, total = self.bad_total(window)
        if total <= 0:  # no traffic burns nothing (the common case for most SLOs, kept cheap)
            return 0.0
        return policy.burn_rate(bad, total, self.spec.objective_ratio)

    @property
    def period_window(self) -> str:
        return _period_window(self.spec.period)

    def budget_remaining(self) -> float:
        bad, total = self.bad_total(self.period_window)
        return policy.error_budget_remaining(bad, total, self.spec.objective_ratio)

    def lifetime(self) -> tuple[float, float]:
        """(good, bad) events counted since the counts began (persisted across restarts)."""
        total, second = self.windows.total, self.windows.second
        if self.good_channel:
            return second, max(total - second, 0.0)
        return max(total - second, 0.0), second


@functools.cache
def _conditions(period: float) -> list[policy.AlertCondition]:
    """The policy's conditions for a period, shared by every SLO with that period (read-only)."""
    return policy.conditions(period)


@functools.cache
def _period_window(period: float) -> str:
    return policy.period_window(period)


@functools.cache
def _short_windows(period: float) -> tuple[str, ...]:
    return tuple({c.short_window: None for c in _conditions(period)})


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SloEngine:
    def __init__(
        self,
        slos: list[SLOSpec],
        alerting: AlertingConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sink: AlertSink | None = None,
        generator_url: str = "",
    ) -> None:
        self.config = alerting or AlertingConfig()
        self.clock = clock
        self.sink = sink
        self.generator_url = generator_url.rstrip("/")
        self.index = SloIndex()
        self.slos: dict[str, SloState] = {}
        self._states: list[SloState] = []
        self.deltas = DeltaTracker()
        self.evaluations = 0
        self.last_evaluation = 0.0
        rules_only = []
        for slot, spec in enumerate(slos):
            counted = self.index.add(slot, spec)
            if not counted:
                rules_only.append(spec.name)
            state = SloState(
                slot=slot,
                spec=spec,
                windows=SloWindows(spec.period),
                conditions=_conditions(spec.period),
                alerts={s: AlertState(s) for s in SEVERITIES},
                counted_in_stream=counted,
                good_channel=spec.sli.metrics is not None and spec.sli.metrics.good is not None,
            )
            self.slos[spec.name] = state
            self._states.append(state)
        if rules_only:
            log.info(
                "%d SLO(s) with a prometheus SLI are for rule generation only (burnline does not "
                "evaluate PromQL in-stream): %s",
                len(rules_only),
                ", ".join(rules_only[:10]) + (" …" if len(rules_only) > 10 else ""),
            )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def states(self) -> list[SloState]:
        """Every SLO's state, by slot (the index counts carry)."""
        return self._states

    # -- counting

    def signals(self) -> set[Signal]:
        out = set()
        if self.index.logs:
            out.add(Signal.LOGS)
        if self.index.traces:
            out.add(Signal.TRACES)
        if self.index.metrics:
            out.add(Signal.METRICS)
        return out

    def observe(self, batch: Batch) -> None:
        """Counts a batch's events (read-only; the batch is not changed or kept)."""
        now = self.clock()
        if batch.signal == Signal.METRICS:
            wanted = self.wanted_points(batch)
            if not wanted:
                return
            counts: Counts = {}
            self.index.metrics.count(self.deltas.deltas(wanted, time.monotonic()), counts)
        else:
            counts = self.record_counts(batch, now)
        if counts:
            self.add_counts(counts, now)

    def record_counts(self, batch: Batch, now: float) -> Counts:
        """The (SLO slot, bucket) counts of a batch of logs or spans, not yet added."""
        counts: Counts = {}
        index = self.index.logs if batch.signal == Signal.LOGS else self.index.traces
        if index:
            index.count(batch.items, int(now * 1e9), counts)
        return counts

    def wanted_points(self, batch: Batch) -> list[Any]:
        """The metric points of a batch whose increases some SLO counts."""
        metrics = self.index.metrics
        if not metrics:
            return []
        return [p for p in batch.items if metrics.wanted(p)]

    def add_counts(self, counts: Counts, now: float) -> None:
        oldest = now - self.config.lateness
        states = self._states
        advanced: set[int] = set()
        for (slot, bucket), (total, second) in counts.items():
            state = states[slot]
            # A bucket counts when its newest instant is within lateness (10 s granularity).
            if bucket + 10 <= oldest:
                state.late += total
                continue
            if slot not in advanced:
                state.windows.advance(now)
                advanced.add(slot)
            if state.windows.add(float(bucket), total, second, now):
                state.dirty = True
            else:
                state.late += total

    # -- evaluation

    def evaluate(self, now: float | None = None) -> list[dict[str, Any]]:
        """Updates every SLO's alert states at ``now``; returns the alerts to send (firing, re-sent or
        resolved). SLOs that cannot fire and have no alert to re-send are skipped, windows unmoved."""
        now = self.clock() if now is None else now
        out: list[dict[str, Any]] = []
        for state in self._states:
            windows = state.windows
            # Every condition needs its short window's burn rate above a positive factor: with no
            # bad event in any short window nothing can fire. That is the usual case, and it is
            # decided before the windows move: moving them only removes bad events. (Not so for a
            # good: SLI, whose bad count is a difference: those always move.)
            alerts = state.alerts
            if (
                not state.good_channel
                and not state.can_fire()
                and not any(a.firing or a.resolved_at for a in alerts.values())
            ):
                continue
            windows.advance(now)
            can_fire = state.can_fire()
            for severity, alert in alerts.items():
                enabled = getattr(state.spec.alerting, severity).enabled
                fired = self._fired(state, severity) if enabled and can_fire else []
                self._transition(state, alert, fired, now, out)
        self.evaluations += 1
        self.last_evaluation = now
        return out

    def _fired(self, state: SloState, severity: str) -> list[dict[str, Any]]:
        fired = []
        for cond in state.conditions:
            if cond.severity != severity:
                continue
            long_rate = state.burn_rate(cond.long_window)
            short_rate = state.burn_rate(cond.short_window)
            if cond.holds(long_rate, short_rate):
                fired.append(
                    {
                        "long_window": cond.long_window,
                        "short_window": cond.short_window,
                        "factor": cond.factor,
                        "long_burn_rate": long_rate,
                        "short_burn_rate": short_rate,
                    }
                )
        return fired

    def _transition(
        self,
        state: SloState,
        alert: AlertState,
        fired: list[dict[str, Any]],
        now: float,
        out: list[dict[str, Any]],
    ) -> None:
        resend = self.config.resend_delay
        if fired:
            alert.fired_by = fired
            if not alert.firing:
                alert.firing = True
                alert.started_at = now
                alert.resolved_at = 0.0
                log.warning(
                    "SLO %s: %s alert firing (%s)",
                    state.spec.name,
                    alert.severity,
                    "; ".join(
                        f"burn {f['long_burn_rate']:.2f} over {f['long_window']} and "
                        f"{f['short_burn_rate']:.2f} over {f['short_window']} > {f['factor']:.4g}"
                        for f in fired
                    ),
                )
            elif now - alert.last_sent < resend:
                return
            alert.last_sent = now
            out.append(self.alert_payload(state, alert, now))
            return
        if alert.firing:
            alert.firing = False
            alert.resolved_at = now
            log.info("SLO %s: %s alert resolved", state.spec.name, alert.severity)
        elif not alert.resolved_at:
            return
        elif now - alert.resolved_at > RESOLVED_RETENTION:
            alert.resolved_at = 0.0
            alert.fired_by = []
            return
        elif now - alert.last_sent < resend:
            return
        alert.last_sent = now
        out.append(self.alert_payload(state, alert, now))

    def alert_payload(self, state: SloState, alert: AlertState, now: float) -> dict[str, Any]:
        """One Alertmanager API v2 ``postableAlert``."""
        spec = state.spec
        alerting = spec.alerting
        own = getattr(alerting, alert.severity)
        labels = {
            **spec.labels,
            **alerting.labels,
            "severity": alert.severity,
            **own.labels,
            "alertname": spec.alert_name,
            "slo": spec.name,
            "service": spec.service,
        }
        remaining = state.budget_remaining()
        fired = "; ".join(
            f"{f['long_window']} burn rate {f['long_burn_rate']:.2f} and {f['short_window']} "
            f"{f['short_burn_rate']:.2f} above {f['factor']:.4g}"
            for f in alert.fired_by
        )
        annotations = {
            "summary": f"{spec.name}: the error budget of {spec.service} is burning too fast",
            "description": (
                f"{spec.description + '. ' if spec.description else ''}"
                f"Objective {spec.objective:g}% over {state.period_window}; "
                f"{fired or 'no condition holds now'}; "
                f"error budget remaining {remaining:.1%}."
            ),
            "burn_rates": fired,
            "error_budget_remaining": f"{remaining:.4f}",
            **alerting.annotations,
            **own.annotations,
        }
        if alert.firing:
            ends = now + 4 * max(self.config.evaluation_interval, self.config.resend_delay)
        else:
            ends = alert.resolved_at
        payload: dict[str, Any] = {
            "labels": labels,
            "annotations": {k: v for k, v in annotations.items() if v != ""},
            "startsAt": _iso(alert.started_at),
            "endsAt": _iso(ends),
        }
        if self.generator_url:
            payload["generatorURL"] = f"{self.generator_url}/status/slos/{spec.name}"
        return payload

    # -- status

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """What ``/api/v1/slos`` shows: per SLO its objective, SLI now, burn rates and alerts."""
        states = [self.slos[name]] if name is not None else self._states
        self.advance(states)
        return [self._status(state) for state in states]

    async def status_chunks(
        self, states: list[SloState], chunk: int = 100
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The status of ``states``, ``chunk`` at a time, the event loop given back between two (a
        caller that writes each chunk out holds no more than one). A chunk of 100 takes about 4 ms
        to build and encode: a request arriving meanwhile needs a few turns of the loop, each that
        long at most, before it is answered."""
        states = list(states)  # a reload may replace the engine's list meanwhile
        for start in range(0, len(states), chunk):
            part = states[start : start + chunk]
            self.advance(part)
            yield [self._status(state) for state in part]
            await asyncio.sleep(0)

    def advance(self, states: list[SloState] | None = None) -> None:
        """Moves the windows to the clock's now (evaluation skips SLOs that cannot fire)."""
        now = self.clock()
        for state in self._states if states is None else states:
            state.windows.advance(now)

    def _status(self, state: SloState) -> dict[str, Any]:
        spec = state.spec
        windows: dict[str, Any] = {}
        for window in state.windows.sums:
            bad, total = state.bad_total(window)
            windows[window] = {
                "total": total,
                "bad": min(max(bad, 0.0), total),
                "error_ratio": policy.error_ratio(bad, total),
                "burn_rate": policy.burn_rate(bad, total, spec.objective_ratio),
            }
        bad5, total5 = state.bad_total("5m")
        good, bad_events = state.lifetime()
        return {
            "name": spec.name,
            "service": spec.service,
            "description": spec.description,
            "kind": spec.sli.kind,
            "in_stream": state.counted_in_stream,
            "objective": spec.objective,
            "objective_ratio": spec.objective_ratio,
            "period": state.period_window,
            "sli": None if total5 <= 0 else 1.0 - policy.error_ratio(bad5, total5),
            "windows": windows,
            "error_budget_remaining": state.budget_remaining(),
            "events": {"good": good, "bad": bad_events, "late": state.late},
            "conditions": [
                {
                    "severity": c.severity,
                    "long_window": c.long_window,
                    "short_window": c.short_window,
                    "factor": c.factor,
                    "holds": c.holds(state.burn_rate(c.long_window), state.burn_rate(c.short_window)),
                }
                for c in state.conditions
            ],
            "alerts": {
                severity: {
                    "enabled": getattr(spec.alerting, severity).enabled,
                    "state": "firing" if a.firing else ("resolved" if a.resolved_at else "inactive"),
                    "since": _iso(a.started_at if a.firing else a.resolved_at)
                    if (a.firing or a.resolved_at)
                    else None,
                }
                for severity, a in state.alerts.items()
            },
            "source": spec.source,
        }

    # -- running

    async def run_evaluations(self) -> None:
        interval = self.config.evaluation_interval
        while True:
            try:
                alerts = self.evaluate()
                if alerts and self.sink is not None:
                    self.sink.send(alerts)
            except Exception:  # a bug here must not stop alerting for good
                log.exception("SLO evaluation failed")
            await asyncio.sleep(interval)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.run_evaluations(), name="slo-evaluation"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
