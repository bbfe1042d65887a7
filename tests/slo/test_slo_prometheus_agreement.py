"""burnline's own burn rates and the ones a real Prometheus computes from `burnline slo rules` agree.

Two real burnline replicas take the same live traffic through their receivers (checkout spans over
OTLP/HTTP, search logs over Fluent Forward; tests/test_dashboards.py's burnline_replicas), a real
Prometheus scrapes them and evaluates the generated rules. The 5m SLI error ratio Prometheus records
(summed across replicas) and each replica's own 5m burn rate, turned back into a ratio, must both
match the bad share that was sent.

Tolerance: the traffic keeps its bad share exact per replica (Sent.next), so every estimate should
hit it; what differs is only when each looks. Prometheus' rate() extrapolates over a 5m range of
1 s scrapes taken while traffic ramps up from nothing, and burnline counts whole 10 s buckets: 25 %
relative covers both, and is still far from a wrong formula (an objective slip is a factor of 10).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from tests.project.test_dashboards import (
    LIVE_SLOS,
    LIVE_TRAFFIC,
    burnline_replicas,
    generated_rules,
)
from tests.real_services import needs_prometheus, real_prometheus

TOLERANCE = 0.25


def burnline_ratio(admin: str, spec: dict[str, Any]) -> float | None:
    """The replica's own 5m burn rate for ``spec``, as an error ratio (burn * (1 - objective))."""
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if (
            line.startswith("burnline_slo_burn_rate{")
            and f'slo="{spec["name"]}"' in line
            and 'window="5m"' in line
        ):
            return float(line.rsplit(" ", 1)[1]) * (1 - spec["objective"] / 100)
    return None


def close(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) <= TOLERANCE * expected


@needs_prometheus
async def test_prometheus_from_the_generated_rules_and_burnline_agree_on_burn_rates(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        admins = await stack.enter_async_context(burnline_replicas(tmp_path, 2))
        rule_file = generated_rules(LIVE_SLOS, tmp_path)

        def config(_: int) -> dict[str, Any]:
            return {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rule_file)],
                "scrape_configs": [{"job_name": "burnline", "static_configs": [{"targets": admins}]}],
            }

        prometheus = await stack.enter_async_context(real_prometheus(tmp_path / "prometheus", config))
        found: dict[str, Any] = {}
        for _ in range(90):  # bounded: about a minute and a half
            found = {}
            for spec in LIVE_SLOS:
                expected = LIVE_TRAFFIC[spec["name"]][1]
                series = await prometheus.query(f'slo:sli_error:ratio_rate5m{{sloth_slo="{spec["name"]}"}}')
                from_rules = float(series[0]["value"][1]) if series else None
                own = [await asyncio.to_thread(burnline_ratio, admin, spec) for admin in admins]
                found[spec["name"]] = {"expected": expected, "prometheus": from_rules, "burnline": own}
            if all(
                close(f["prometheus"], f["expected"]) and all(close(v, f["expected"]) for v in f["burnline"])
                for f in found.values()
            ):
                break
            await asyncio.sleep(1)
        assert all(
            close(f["prometheus"], f["expected"]) and all(close(v, f["expected"]) for v in f["burnline"])
            for f in found.values()
        ), json.dumps(found, indent=2) + prometheus.log_tail()
