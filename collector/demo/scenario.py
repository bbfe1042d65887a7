"""The demo's story: three services, their SLOs, and a short checkout incident timed so that the page
alert fires within seconds and resolves within the demo.

Services and SLOs (one SLI per signal, objective 99 % over 30 days, so the error budget is 1 %):

    checkout  traces   server spans with an error status are bad       baseline 0.05 % errors
    cart      logs     log records at severity error or worse are bad  baseline 0.05 % errors
    search    metrics  requests slower than 300 ms (scraped histogram) baseline 0.2 % slow

Timeline: healthy traffic from the start; at ``incident_at`` (60 s) checkout's payment provider
fails ``incident_error_ratio`` (75 %) of checkouts for ``incident_length`` (8 s); then it recovers.
Bad requests are spread evenly (every k-th request, not random draws), so the ratios below are exact.

The math. The page conditions are burn > 14.4 over 1h and 5m, or > 6 over 6h and 30m; with a 1 %
budget a burn rate of 14.4 is an error ratio of 14.4 %, 6 is 6 %. The engine's windows are whole
10-second buckets of event time, the 5m window 290-300 s long. The demo's windows hold only the
demo's own traffic, so for the first ~290 s every window (5m, 30m, 1h, 6h) holds *all* of it and
has the same ratio, the cumulative one. (In production the 1h and 6h windows hold an hour or six of
healthy traffic and a real incident needs minutes at 100 % errors to page; the demo compresses
that.) With T0 = 60 s of baseline b = 0.05 % and an incident ratio e = 75 % running t seconds, the
cumulative ratio is ``(b*T0 + e*t) / (T0 + t)``:

- the slow pair (> 6 %) first holds at ``t = (0.06 - b) * T0 / (e - 0.06)`` = 0.0595 * 60 / 0.69
  = 5.2 s, inside the 8 s incident: detection ~5 s plus at most one evaluation interval (1 s);
- the fast pair (> 14.4 %) would need ``t = (0.144 - b) * T0 / (e - 0.144)`` = 14.2 s: it never holds,
  the incident is over first. The slow pair pages; it is a page condition all the same;
- after recovery the ratio falls as healthy traffic dilutes the ``e * D`` bad seconds; the slow pair
  stops holding when ``(b*(T - D) + e*D) / T < 0.06``, at ``T = (e - b) * D / (0.06 - b)``
  = 0.7495 * 8 / 0.0595 = 100.8 s after the start, ~33 s after recovery. The fast pair is below its
  threshold then too (its windows hold the same ratio), so the alert resolves at ~101 s, well inside
  a 150 s demo. The volume does not enter (both counts scale with it): it only makes the counts
  big enough to look like traffic.

The ticket conditions (> 3 over 1d and 2h, > 1 over 3d and 6h: 3 % and 1 %) hold within a second
of the incident's start, and the slow one until the cumulative ratio is under 1 %, at
0.7495 * 8 / 0.0095 = 631 s: a 150 s demo ends with the ticket still firing, and with the budget
overspent (the period holds only the demo's own minutes, a 4 % error ratio against 1 % allowed).

A demo longer than ~290 s lets the 5m window roll past the start; nothing changes above, as the
alert has resolved by then and the healthy traffic only lowers every window further.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

OBJECTIVE = 99.0
# The page conditions' burn-rate factors for a 30-day period (SRE Workbook; collector/slo/policy.py).
PAGE_SLOW_FACTOR = 6.0
PAGE_FAST_FACTOR = 14.4


@dataclass(frozen=True)
class ServiceProfile:
    """One demo service: its name, request rate, baseline bad ratio and the SLI its SLO reads."""

    name: str
    rate: float  # requests per second
    baseline_bad_ratio: float
    signal: str  # "traces", "logs" or "metrics": the SLI of its SLO
    route: str  # the server span's name


SERVICES: tuple[ServiceProfile, ...] = (
    ServiceProfile("checkout", 25.0, 0.0005, "traces", "POST /checkout"),
    ServiceProfile("cart", 30.0, 0.0005, "logs", "POST /cart/items"),
    ServiceProfile("search", 40.0, 0.002, "metrics", "GET /search"),
)

NAMESPACE = "shop"
INCIDENT_SERVICE = "checkout"
SEARCH_LATENCY_THRESHOLD = 0.3  # seconds; the histogram has a bucket at exactly this bound


@dataclass(frozen=True)
class Scenario:
    """When checkout fails and how badly; the services and their SLOs."""

    incident_at: float = 60.0
    incident_length: float = 8.0
    incident_error_ratio: float = 0.75
    services: tuple[ServiceProfile, ...] = field(default=SERVICES)

    def service(self, name: str) -> ServiceProfile:
        return next(s for s in self.services if s.name == name)

    @property
    def incident_end(self) -> float:
        return self.incident_at + self.incident_length

    def bad_ratio(self, service: str, elapsed: float) -> float:
        """The share of ``service``'s requests that go bad at ``elapsed`` seconds into the demo."""
        profile = self.service(service)
        if service == INCIDENT_SERVICE and self.incident_at <= elapsed < self.incident_end:
            return self.incident_error_ratio
        return profile.baseline_bad_ratio

    # -- the math of the module docstring, for the summary and the tests

    def _threshold(self, factor: float) -> float:
        return factor * (1.0 - OBJECTIVE / 100.0)

    def expected_detection(self) -> float | None:
        """Seconds from the incident's first bad event until the page condition first holds (before
        the evaluation interval), or None when it never holds during the incident."""
        b = self.service(INCIDENT_SERVICE).baseline_bad_ratio
        e = self.incident_error_ratio
        threshold = self._threshold(PAGE_SLOW_FACTOR)
        if e <= threshold:
            return None
        t = max(0.0, (threshold - b) * self.incident_at / (e - threshold))
        return t if t < self.incident_length else None

    def expected_resolution(self) -> float:
        """Seconds after the start when no page condition holds any more (the cumulative ratio is
        back under the slow pair's threshold)."""
        b = self.service(INCIDENT_SERVICE).baseline_bad_ratio
        e = self.incident_error_ratio
        threshold = self._threshold(PAGE_SLOW_FACTOR)
        return max(self.incident_end, (e - b) * self.incident_length / (threshold - b))


def demo_slos() -> list[dict[str, Any]]:
    """The demo's SLOs, in the config's ``slos:`` shape."""
    return [
        {
            "name": "checkout-availability",
            "service": "checkout",
            "objective": OBJECTIVE,
            "description": "Checkout requests that succeed",
            "labels": {"team": "shop", "demo": "burnline"},
            "sli": {
                "traces": {
                    "match": {"service.name": "checkout", "span.kind": "server"},
                    "bad": {"status": "error"},
                }
            },
            "alerting": {
                "name": "CheckoutAvailability",
                "labels": {"category": "availability"},
                "annotations": {"runbook_url": "https://runbooks.example/checkout#availability"},
                "page": {"labels": {"severity": "page"}},
                "ticket": {"labels": {"severity": "ticket"}},
            },
        },
        {
            "name": "cart-log-errors",
            "service": "cart",
            "objective": OBJECTIVE,
            "description": "Cart log records that are not errors",
            "labels": {"team": "shop", "demo": "burnline"},
            "sli": {
                "logs": {
                    "match": {"service.name": "cart", "k8s.namespace.name": NAMESPACE},
                    "bad": {"severity": ">=error"},
                }
            },
            "alerting": {"name": "CartLogErrors", "labels": {"category": "errors"}},
        },
        {
            "name": "search-latency",
            "service": "search",
            "objective": OBJECTIVE,
            "description": f"Search requests answered within {SEARCH_LATENCY_THRESHOLD * 1000:g}ms",
            "labels": {"team": "discovery", "demo": "burnline"},
            "sli": {
                "metrics": {
                    "total": 'http_request_duration_seconds_count{job="search"}',
                    "good": (
                        'http_request_duration_seconds_bucket{job="search",'
                        f'le="{SEARCH_LATENCY_THRESHOLD:g}"}}'
                    ),
                }
            },
            "alerting": {"name": "SearchLatency", "labels": {"category": "latency"}},
        },
    ]


class EvenSpread:
    """Marks exactly ``ratio`` of the calls bad, evenly spaced (no random clusters): call ``next``
    once per request with the ratio in force for it."""

    __slots__ = ("_credit",)

    def __init__(self) -> None:
        self._credit = 0.0

    def next(self, ratio: float) -> bool:
        if not (math.isfinite(ratio) and ratio > 0.0):
            return False
        self._credit += min(ratio, 1.0)
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False
