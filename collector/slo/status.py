"""Reading a running burnline's SLO status (its admin ``/api/v1/slos``) and printing it as a table.

One block per SLO: a header line (name, service, objective, SLI over the last 5 minutes, error
budget left, alert states), then one line per alert condition with both windows' burn rates against
its factor, marked ``!`` where the burn rate is above the factor, ``FIRING`` where both are.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class StatusError(Exception):
    """The admin API could not be read; the message says why."""


@dataclass(frozen=True, slots=True)
class SloList:
    slos: list[dict[str, Any]]
    total: int  # SLOs the burnline has
    matched: int  # SLOs the filters selected (slos holds up to the limit of them)

    def footer(self) -> str:
        """A line saying what was left out, or nothing when the list is every SLO."""
        shown = len(self.slos)
        if shown == self.total or self.matched == 0:
            return ""
        if self.matched == self.total:
            return f"{shown:,} of {self.total:,} SLOs shown\n"
        return f"{shown:,} of {self.matched:,} matching SLOs shown ({self.total:,} in all)\n"


def fetch_status(admin_url: str, timeout: float = 10.0, params: Mapping[str, str] | None = None) -> SloList:
    """The SLO list of a running burnline; ``params`` are the API's filters (service, name, firing,
    sort, limit)."""
    url = admin_url.rstrip("/") + "/api/v1/slos"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        raise StatusError(f"{url} answered {exc.code} {exc.reason}{_problem(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(f"cannot reach burnline's admin server at {url}: {reason}") from None
    except ValueError as exc:
        raise StatusError(f"{url} did not answer JSON: {exc}") from None
    slos = data.get("slos") if isinstance(data, dict) else None
    if not isinstance(slos, list):
        raise StatusError(f"{url} did not answer an SLO list (is this burnline's admin port?)")
    # A burnline from before the filters answers the list alone: every SLO.
    total, matched = data.get("total", len(slos)), data.get("matched", len(slos))
    return SloList(
        slos,
        total if isinstance(total, int) else len(slos),
        matched if isinstance(matched, int) else len(slos),
    )


def _problem(exc: urllib.error.HTTPError) -> str:
    """The admin API's own words for a refused request (``{"error": ...}``), when it gave them."""
    try:
        error = json.loads(exc.read(4096)).get("error")
    except (OSError, ValueError, AttributeError):
        return ""
    return f": {error}" if isinstance(error, str) else ""


def _percent(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _rate(value: float) -> str:
    return f"{value:.2f}" if value < 1000 else f"{value:.3g}"


def render(slos: list[dict[str, Any]], narrowed: bool = False) -> str:
    """The human table of ``burnline slo status``."""
    if not slos:
        return "no SLO matches\n" if narrowed else "no SLOs configured\n"
    lines: list[str] = []
    for slo in slos:
        alerts = slo.get("alerts", {})
        alert_text = ", ".join(
            f"{severity} {info['state']}" + ("" if info.get("enabled", True) else " (disabled)")
            for severity, info in alerts.items()
        )
        objective = float(slo["objective"])
        lines.append(
            f"{slo['name']}  service={slo['service']}  objective={objective:g}% over {slo['period']}  "
            f"SLI(5m)={_percent(slo.get('sli'))}  budget left={_percent(slo['error_budget_remaining'], 1)}  "
            f"alerts: {alert_text}"
        )
        if not slo.get("in_stream", True):
            lines.append("    (prometheus SLI: evaluated by the generated Prometheus rules, not in-stream)")
            continue
        windows = slo.get("windows", {})
        for cond in slo.get("conditions", []):
            long_rate = windows[cond["long_window"]]["burn_rate"]
            short_rate = windows[cond["short_window"]]["burn_rate"]
            factor = cond["factor"]
            marks = ["!" if r > factor else " " for r in (long_rate, short_rate)]
            lines.append(
                f"    {cond['severity']:<6}  burn {cond['long_window']:>3} {_rate(long_rate):>8}{marks[0]} "
                f" {cond['short_window']:>3} {_rate(short_rate):>8}{marks[1]}  > {factor:.4g}"
                + ("  FIRING" if cond.get("holds") else "")
            )
        period = slo.get("period", "")
        if period in windows:
            total = windows[period]["total"]
            bad = windows[period]["bad"]
            lines.append(f"    events over {period}: {total:.0f} ({bad:.0f} bad)")
    return "\n".join(lines) + "\n"
