"""Reading a running burnline's SLO status (its admin ``/api/v1/slos``) and printing it as a table.

One block per SLO: a header line (name, service, objective, SLI over the last 5 minutes, error
budget left, alert states), then one line per alert condition with both windows' burn rates against
its factor, marked ``!`` where the burn rate is above the factor, ``FIRING`` where both are.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class StatusError(Exception):
    """The admin API could not be read; the message says why."""


def fetch_status(admin_url: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    url = admin_url.rstrip("/") + "/api/v1/slos"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        raise StatusError(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(f"cannot reach burnline's admin server at {url}: {reason}") from None
    except ValueError as exc:
        raise StatusError(f"{url} did not answer JSON: {exc}") from None
    slos = data.get("slos") if isinstance(data, dict) else None
    if not isinstance(slos, list):
        raise StatusError(f"{url} did not answer an SLO list (is this burnline's admin port?)")
    return slos


def _percent(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _rate(value: float) -> str:
    return f"{value:.2f}" if value < 1000 else f"{value:.3g}"


def render(slos: list[dict[str, Any]]) -> str:
    """The human table of ``burnline slo status``."""
    if not slos:
        return "no SLOs configured\n"
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
