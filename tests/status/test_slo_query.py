"""Selecting SLOs for the status page and the API (collector/status/slo_query.py), then both over HTTP
with more SLOs than a chunk of work: the list API streamed in parts is byte for byte the document it
would be whole, and the page lists the SLOs in most trouble first, every firing one, and says what
it left out."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.core.telemetry import Telemetry
from collector.slo.engine import SloEngine
from collector.slo.spec import SLOSpec
from collector.status import StatusSources, add_routes
from collector.status.pipeline import PipelineSampler
from collector.status.slo_query import MAX_SLO_LIMIT, SloQuery, select, slo_query
from collector.status.store import MAX_TEXT, ParamError
from tests.slo.test_slo_engine import Clock, engine_for, logs


def spec(name: str, service: str) -> SLOSpec:
    return SLOSpec.model_validate(
        {
            "name": name,
            "service": service,
            "objective": 99.0,
            "sli": {"logs": {"match": {"service.name": service}, "bad": {"severity": ">=error"}}},
        }
    )


def burning_engine(count: int = 250) -> tuple[SloEngine, Clock]:
    """``count`` SLOs of services svc-0..svc-9; the SLOs of svc-3 have spent budget, and the last
    SLO (svc-3's too, last in configuration order) pages."""
    clock = Clock()
    engine = engine_for(*(spec(f"slo-{i:03d}", f"svc-{i % 10}") for i in range(count)), clock=clock)
    for _ in range(10):
        clock.now += 60
        # svc-3: 20% bad against a 1% budget (a burn rate of 20, over the page's 14.4); svc-4
        # spotless; the others have no traffic.
        engine.observe(logs(clock, good=80, bad=20, resource={"service.name": "svc-3"}))
        engine.observe(logs(clock, good=100, bad=0, resource={"service.name": "svc-4"}))
    engine.evaluate()
    return engine, clock


# -- parameters


def test_defaults_are_the_askers() -> None:
    assert slo_query({}, sort="config", limit=None, max_limit=MAX_SLO_LIMIT) == SloQuery()
    assert slo_query({}, sort="budget", limit=100, max_limit=1000) == SloQuery(sort="budget", limit=100)
    q = slo_query(
        {"service": "check*", "name": "slo-1?", "firing": "true", "sort": "budget", "limit": "7"},
        sort="config",
        limit=None,
        max_limit=10,
    )
    assert q == SloQuery(service="check*", name="slo-1?", firing=True, sort="budget", limit=7)
    assert q.narrowed() and not SloQuery(sort="budget", limit=3).narrowed()
    # An empty text field is no filter (a form sends every field).
    assert slo_query({"service": " "}, sort="config", limit=None, max_limit=10).service is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"colour": "red"}, "colour"),
        ({"firing": "maybe"}, "firing"),
        ({"sort": "name"}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "11"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "\uff11"}, "limit"),  # a fullwidth digit is not a count
        ({"service": "s" * (MAX_TEXT + 1)}, "service"),
        ({"name": "\ud800"}, "name"),  # a lone surrogate is not text
    ],
)
def test_a_bad_parameter_is_named(params: dict[str, str], named: str) -> None:
    with pytest.raises(ParamError) as caught:
        slo_query(params, sort="config", limit=None, max_limit=10)
    assert caught.value.name == named and repr(named) in str(caught.value)


# -- selection


async def test_filters_select_by_service_name_and_firing() -> None:
    engine, clock = burning_engine()
    states = engine.states

    async def names(**q: Any) -> tuple[list[str], int]:
        selected, matched = await select(states, SloQuery(**q), clock())
        return [s.spec.name for s in selected], matched

    by_service = [f"slo-{i:03d}" for i in range(3, 250, 10)]
    assert await names(service="svc-3") == (by_service, 25)
    assert await names(service="svc-[34]") == (
        sorted(by_service + [f"slo-{i:03d}" for i in range(4, 250, 10)]),
        50,
    )
    assert await names(name="slo-00?") == ([f"slo-00{i}" for i in range(10)], 10)
    assert await names(name="slo-24*", service="svc-3") == (["slo-243"], 1)
    assert await names(service="svc") == ([], 0)  # exact unless it holds a wildcard
    # Only svc-3's SLOs burn, and all of them page.
    firing = [s.spec.name for s in states if any(a.firing for a in s.alerts.values())]
    assert firing == by_service
    assert await names(firing=True) == (by_service, 25)
    # The limit cuts what is returned, not what is counted.
    assert await names(service="svc-3", limit=2) == (by_service[:2], 25)


async def test_a_glob_character_alone_is_matched_as_written() -> None:
    clock = Clock()
    engine = engine_for(spec("odd", "we[ird"), spec("plain", "weird"), clock=clock)
    selected, _ = await select(engine.states, SloQuery(service="we[ird"), clock())
    assert [s.spec.name for s in selected] == ["odd"]


async def test_budget_order_puts_the_most_spent_first_then_by_name() -> None:
    engine, clock = burning_engine()
    selected, matched = await select(engine.states, SloQuery(sort="budget", limit=30), clock())
    assert matched == 250
    budgets = [(s.budget_remaining(), s.spec.name) for s in selected]
    assert budgets == sorted(budgets)
    assert [name for _, name in budgets[:25]] == [f"slo-{i:03d}" for i in range(3, 250, 10)]
    assert budgets[0][0] < 0 < budgets[25][0]  # svc-3 overspent; the others untouched
    # Configuration order is the engine's.
    selected, _ = await select(engine.states, SloQuery(limit=3), clock())
    assert [s.spec.name for s in selected] == ["slo-000", "slo-001", "slo-002"]


# -- over HTTP


@asynccontextmanager
async def admin_client(engine: SloEngine | None) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_routes(app, StatusSources(PipelineSampler(Telemetry()), lambda: engine, lambda: None))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_list_is_streamed_as_the_whole_document() -> None:
    engine, _ = burning_engine()  # 250 SLOs: three chunks of status
    async with admin_client(engine) as client:
        for query, expected in [
            ("", engine.status()),
            ("?service=svc-3&limit=4", [s for s in engine.status() if s["service"] == "svc-3"][:4]),
            ("?service=nobody", []),
        ]:
            response = await client.get("/api/v1/slos" + query)
            assert response.status == 200 and response.content_type == "application/json"
            matched = 25 if "svc-3" in query else (0 if expected == [] else 250)
            whole = {"total": 250, "matched": matched, "slos": expected}
            assert await response.read() == orjson.dumps(
                whole, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
            ), query
        response = await client.get("/api/v1/slos?sort=budget&firing=true&limit=1")
        body = await response.json()
        assert [s["name"] for s in body["slos"]] == ["slo-003"] and body["matched"] == 25

        response = await client.get("/api/v1/slos?limit=0")
        assert response.status == 400
        assert (await response.json())["parameter"] == "limit"
    async with admin_client(None) as client:
        response = await client.get("/api/v1/slos")
        assert await response.json() == {"total": 0, "matched": 0, "slos": []}


async def test_the_page_lists_the_most_spent_first_every_firing_one_and_what_it_left_out() -> None:
    engine, _ = burning_engine()
    async with admin_client(engine) as client:
        html = await (await client.get("/status")).text()
        rows = re.findall(r'<tr data-slo="([^"]+)"', html)
        assert len(rows) == 100 and rows[:25] == [f"slo-{i:03d}" for i in range(3, 250, 10)]
        assert "Showing 100 of 250 SLOs, lowest error budget first." in html
        assert 'id="alerts"' in html
        assert '<form class="search" method="get" action="/status">' in html

        # In configuration order and one row, the firing SLOs are still all listed on top.
        html = await (await client.get("/status", params={"sort": "config", "limit": "1"})).text()
        assert re.findall(r'<tr data-slo="([^"]+)"', html) == ["slo-000"]
        firing = re.findall(r'<li class="state-firing" data-slo="([^"]+)" data-severity="page">', html)
        assert firing == [f"slo-{i:03d}" for i in range(3, 250, 10)]

        # A filter narrows the table; the firing list still names every firing SLO.
        html = await (
            await client.get("/status", params={"service": "svc-4", "name": "", "firing": ""})
        ).text()
        assert set(re.findall(r'<tr data-slo="([^"]+)"', html)) == {f"slo-{i:03d}" for i in range(4, 250, 10)}
        assert "25 of 250 SLOs match." in html
        assert len(re.findall(r'<li class="state-firing" data-slo="[^"]+" data-severity="page"', html)) == 25
        html = await (await client.get("/status", params={"firing": "true", "limit": "5"})).text()
        assert "25 of 250 SLOs match; showing 5, lowest error budget first." in html

        html = await (await client.get("/status", params={"service": "nobody"})).text()
        assert "No SLO matches." in html

        response = await client.get("/status", params={"limit": "1001"})
        assert response.status == 400
        text = await response.text()
        assert "query parameter &#x27;limit&#x27;" in text and '<form class="search"' in text
