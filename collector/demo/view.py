"""What the demo shows: a live rich view in a terminal (``--no-live``: plain progress lines), and the
summary line at the end.

The view is rendered from a :class:`Snapshot` the runner takes about twice a second: it never reads
burnline by itself, so the same snapshot gives the live view and the plain lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SIGNALS = ("logs", "traces", "metrics")


@dataclass
class AlertTimes:
    """When the incident service's page alert fired and resolved, against the traffic's own times
    (all Unix seconds)."""

    first_bad: float | None = None
    last_bad: float | None = None
    fired: float | None = None
    resolved: float | None = None

    @property
    def detection(self) -> float | None:
        """First bad event of the incident -> page alert firing."""
        if self.first_bad is None or self.fired is None:
            return None
        return self.fired - self.first_bad

    @property
    def resolution(self) -> float | None:
        """Last bad event of the incident (recovery) -> page alert resolved."""
        if self.last_bad is None or self.resolved is None:
            return None
        return self.resolved - self.last_bad


@dataclass
class Snapshot:
    elapsed: float
    duration: float | None
    phase: str
    rates: dict[str, float]  # records/s accepted by burnline, per signal
    accepted: dict[str, float]  # records accepted so far, per signal
    requests: dict[str, tuple[int, int]]  # per service: (requests, bad)
    slos: list[dict[str, Any]]
    alertmanager: tuple[int, int] | None  # (successful sends, failed or retried sends); None: none set
    events: list[str] = field(default_factory=list)
    status_url: str = ""
    admin_url: str = ""


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _burn(value: float, threshold: float) -> Text:
    text = f"{value:.2f}"
    return Text(text, style="bold red" if value > threshold else ("yellow" if value > 1 else "green"))


def _alert_state(slo: dict[str, Any], severity: str) -> Text:
    alert = slo["alerts"][severity]
    if not alert["enabled"]:
        return Text("off", style="dim")
    state = alert["state"]
    style = {"firing": "bold white on red", "resolved": "green", "inactive": "dim"}.get(state, "")
    return Text(state.upper() if state == "firing" else state, style=style)


def render(snapshot: Snapshot) -> RenderableType:
    """The live view: header, traffic, SLOs, events."""
    header = Text()
    header.append("burnline demo", style="bold")
    progress = f"{snapshot.elapsed:5.0f}s"
    if snapshot.duration:
        progress += f" / {snapshot.duration:.0f}s"
    header.append(f"  {progress}  ")
    phase_style = "bold red" if "INCIDENT" in snapshot.phase else "green"
    header.append(snapshot.phase, style=phase_style)
    header.append(f"\nstatus page {snapshot.status_url}   admin {snapshot.admin_url}", style="cyan")

    traffic = Table(title="received by burnline", title_justify="left", expand=False)
    traffic.add_column("signal")
    traffic.add_column("rate", justify="right")
    traffic.add_column("total", justify="right")
    for signal in SIGNALS:
        traffic.add_row(
            signal, _rate(snapshot.rates.get(signal, 0.0)), f"{snapshot.accepted.get(signal, 0):,.0f}"
        )

    services = Table(title="demo services", title_justify="left", expand=False)
    services.add_column("service")
    services.add_column("requests", justify="right")
    services.add_column("bad", justify="right")
    for name, (requests, bad) in snapshot.requests.items():
        services.add_row(name, f"{requests:,}", f"{bad:,}")

    slos = Table(title="SLOs (objective, SLI over 5m, burn rates, budget, alerts)", title_justify="left")
    for column, justify in (
        ("SLO", "left"),
        ("SLI", "left"),
        ("objective", "right"),
        ("SLI 5m", "right"),
        ("burn 5m", "right"),
        ("burn 30m", "right"),
        ("burn 1h", "right"),
        ("burn 6h", "right"),
        ("budget left", "right"),
        ("page", "left"),
        ("ticket", "left"),
    ):
        slos.add_column(column, justify=justify)  # type: ignore[arg-type]
    for slo in snapshot.slos:
        windows = slo["windows"]
        sli = slo["sli"]
        # Each window against the factor of the page condition it belongs to (5m & 1h: 14.4, 30m & 6h: 6).
        factors: dict[str, float] = {}
        for c in slo["conditions"]:
            if c["severity"] == "page":
                factors[c["short_window"]] = factors[c["long_window"]] = c["factor"]
        slos.add_row(
            slo["name"],
            slo["kind"],
            f"{slo['objective']:g}%",
            "-" if sli is None else f"{sli:.2%}",
            *(_burn(windows[w]["burn_rate"], factors.get(w, 1.0)) for w in ("5m", "30m", "1h", "6h")),
            f"{slo['error_budget_remaining']:.1%}",
            _alert_state(slo, "page"),
            _alert_state(slo, "ticket"),
        )

    side_by_side = Table.grid(padding=(0, 4))
    side_by_side.add_row(traffic, services)
    parts: list[RenderableType] = [header, side_by_side, slos]
    if snapshot.alertmanager is not None:
        ok, failed = snapshot.alertmanager
        parts.append(Text(f"Alertmanager: {ok} send(s) accepted, {failed} failed or retried"))
    if snapshot.events:
        parts.append(Panel("\n".join(snapshot.events[-8:]), title="events", title_align="left"))
    return Group(*parts)


def progress_line(snapshot: Snapshot) -> str:
    """One plain line of progress (``--no-live``)."""
    rates = " ".join(f"{s} {_rate(snapshot.rates.get(s, 0.0))}" for s in SIGNALS)
    states = []
    for slo in snapshot.slos:
        page = slo["alerts"]["page"]
        state = page["state"] if page["enabled"] else "off"
        states.append(f"{slo['name']} burn5m={slo['windows']['5m']['burn_rate']:.2f} page={state}")
    return f"[{snapshot.elapsed:5.0f}s] {snapshot.phase}; {rates}; " + "; ".join(states)


def summary_line(slo_name: str, times: AlertTimes, elapsed: float, interrupted: bool) -> str:
    """The last line: how long the page alert took to fire and to resolve."""
    how = "interrupted" if interrupted else "done"
    head = f"burnline demo {how} after {elapsed:.0f}s: {slo_name} page alert "
    if times.first_bad is None:
        return head + "not tested (the incident had not started)"
    if times.detection is None:
        return head + "did NOT fire"
    text = head + f"fired {times.detection:.1f}s after the first failed checkout (detection time)"
    if times.resolution is not None:
        text += f", resolved {times.resolution:.1f}s after recovery (resolution time)"
    else:
        text += ", still firing at the end"
    return text
