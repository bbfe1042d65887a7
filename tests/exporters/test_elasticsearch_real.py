"""The exporter's core checks against a real Elasticsearch (opt-in).

Set ``BURNLINE_TEST_ES_URL`` (e.g. http://127.0.0.1:9200) and, when security is on,
``BURNLINE_TEST_ES_API_KEY`` or ``BURNLINE_TEST_ES_USER`` + ``BURNLINE_TEST_ES_PASSWORD``;
``BURNLINE_TEST_ES_CA`` names a CA file for https. Each run writes to its own data streams
(``logs-burnline_test_<random>-*``) and its own index template, and deletes them afterwards.

The same checks run against tests/doubles/elasticsearch.py in tests/test_elasticsearch.py, so the
double and the real thing are held to one standard.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import AsyncElasticsearch, NotFoundError

from collector.core.component import ComponentContext, RetryableExportError
from collector.core.model import Batch, LogRecord, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from exporters.elasticsearch.exporter import ElasticsearchConfig, ElasticsearchExporter

T0 = 1_714_564_800_123_456_789


@dataclass
class Target:
    """Where the checks run: a URL and the credentials for the exporter and for the checking client."""

    url: str
    exporter_settings: dict[str, Any] = field(default_factory=dict)
    client_settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """One check's exporter, its own dataset, and a client to look at what landed."""

    target: Target
    exporter: ElasticsearchExporter
    telemetry: Telemetry
    dataset: str
    client: AsyncElasticsearch
    deadletter_path: Path

    @property
    def stream(self) -> str:
        return f"logs-{self.dataset}-default"

    async def sources(self, stream: str | None = None) -> list[dict[str, Any]]:
        name = stream or self.stream
        await self.client.indices.refresh(index=name)
        found = await self.client.search(index=name, query={"match_all": {}}, size=1000)
        return [hit["_source"] for hit in found["hits"]["hits"]]

    async def ids(self) -> list[str]:
        await self.client.indices.refresh(index=self.stream)
        found = await self.client.search(index=self.stream, query={"match_all": {}}, size=1000)
        return [hit["_id"] for hit in found["hits"]["hits"]]

    def dead_letters(self) -> list[dict[str, Any]]:
        if not self.deadletter_path.exists():
            return []
        return [orjson.loads(line) for line in self.deadletter_path.read_bytes().splitlines()]

    def records(self, n: int, **attributes: Any) -> list[LogRecord]:
        resource = {"service.name": "burnline-test", "k8s.namespace.name": "test", "k8s.pod.name": "pod-0"}
        return [
            LogRecord(
                time_unix_nano=T0 + i,
                body=f"line {i}",
                severity_number=9,
                attributes={"data_stream.dataset": self.dataset, "seq": i, **attributes},
                resource=resource,
            )
            for i in range(n)
        ]


def new_exporter(
    target: Target, tmp_path: Path, telemetry: Telemetry | None = None, **settings: Any
) -> ElasticsearchExporter:
    telemetry = telemetry or Telemetry()
    config = ElasticsearchConfig.model_validate(
        {"endpoints": [target.url], **target.exporter_settings, **settings}
    )
    exporter = ElasticsearchExporter(
        config, ComponentContext("elasticsearch", telemetry, str(tmp_path), logging.getLogger("test.es"))
    )
    exporter.dead_letter = DeadLetter("elasticsearch", tmp_path / "deadletter", telemetry)
    return exporter


@asynccontextmanager
async def open_run(target: Target, tmp_path: Path, **settings: Any) -> AsyncIterator[Run]:
    dataset = f"burnline_test_{secrets.token_hex(4)}"
    telemetry = Telemetry()
    exporter = new_exporter(target, tmp_path, telemetry, **settings)
    client = AsyncElasticsearch(target.url, **target.client_settings)
    await exporter.start()
    try:
        yield Run(
            target, exporter, telemetry, dataset, client, tmp_path / "deadletter" / "elasticsearch.ndjson"
        )
    finally:
        await exporter.stop()
        try:
            await client.indices.delete_data_stream(name=f"logs-{dataset}-*")
        except NotFoundError:
            pass
        await client.close()


# -- the core checks ----------------------------------------------------------------------------------


async def check_documents_land_in_data_streams_as_ecs(target: Target, tmp_path: Path) -> None:
    async with open_run(target, tmp_path) as run:
        records = run.records(3)
        assert await run.exporter.export(Batch(Signal.LOGS, records, 300)) == 3
        sources = sorted(await run.sources(), key=lambda s: s["seq"])
        assert [s["message"] for s in sources] == ["line 0", "line 1", "line 2"]
        first = sources[0]
        assert first["@timestamp"].startswith("2024-05-01T12:00:00.123456789")
        assert first["log"]["level"] == "info"
        assert first["service"]["name"] == "burnline-test"
        assert first["kubernetes"] == {"namespace": "test", "pod": {"name": "pod-0"}}
        assert first["data_stream"] == {"type": "logs", "dataset": run.dataset, "namespace": "default"}
        assert first["event"]["dataset"] == run.dataset
        streams = await run.client.indices.get_data_stream(name=run.stream)
        [stream] = streams["data_streams"]
        assert stream["indices"][0]["index_name"].startswith(f".ds-{run.stream}-")


async def check_resent_records_are_not_duplicated(target: Target, tmp_path: Path) -> None:
    """What a retry after a lost answer does: the same records again -> 409s, counted delivered."""
    async with open_run(target, tmp_path) as run:
        records = run.records(4)
        assert await run.exporter.export(Batch(Signal.LOGS, records, 400)) == 4
        assert await run.exporter.export(Batch(Signal.LOGS, list(records), 400)) == 4
        ids = await run.ids()
        assert len(ids) == 4 and len(set(ids)) == 4
        assert run.dead_letters() == []


async def check_rejected_document_is_dead_lettered(target: Target, tmp_path: Path) -> None:
    async with open_run(target, tmp_path) as run:
        [as_object] = run.records(1, shape={"kind": "object"})
        assert await run.exporter.export(Batch(Signal.LOGS, [as_object], 100)) == 1
        as_value = LogRecord(
            T0 + 10, body="conflicting", attributes={"data_stream.dataset": run.dataset, "shape": "a value"}
        )
        fine = LogRecord(T0 + 11, body="fine", attributes={"data_stream.dataset": run.dataset})
        assert await run.exporter.export(Batch(Signal.LOGS, [as_value, fine], 200)) == 1
        [letter] = run.dead_letters()
        assert letter["reason"] in ("document_parsing_exception", "mapper_parsing_exception")
        assert "shape" in letter["record"]["error"]["reason"]
        assert letter["record"]["document"]["message"] == "conflicting"
        assert letter["record"]["index"] == run.stream
        assert sorted(s["message"] for s in await run.sources()) == ["fine", "line 0"]


async def check_index_template_is_installed(target: Target, tmp_path: Path) -> None:
    name = f"burnline-test-{secrets.token_hex(4)}"
    dataset_prefix = "burnline_test_"
    async with open_run(
        target,
        tmp_path,
        template={
            "install": True,
            "name": name,
            "index_patterns": [f"logs-{dataset_prefix}*-*"],
            "priority": 151,
        },
    ) as run:
        try:
            assert await run.exporter.export(Batch(Signal.LOGS, run.records(1), 100)) == 1
            found = await run.client.indices.get_index_template(name=name)
            [template] = found["index_templates"]
            body = template["index_template"]
            assert body["index_patterns"] == [f"logs-{dataset_prefix}*-*"]
            assert "data_stream" in body
            assert body["template"]["mappings"]["properties"]["@timestamp"] == {"type": "date_nanos"}
            [stream] = (await run.client.indices.get_data_stream(name=run.stream))["data_streams"]
            assert stream["template"] == name
        finally:
            await run.client.indices.delete_data_stream(name=run.stream)
            await run.client.indices.delete_index_template(name=name)


async def check_unreachable_endpoint_is_retried(target: Target, tmp_path: Path) -> None:
    """An endpoint that refuses connections: start still succeeds, export asks for a retry."""
    dead = Target("http://127.0.0.1:9", target.exporter_settings, target.client_settings)
    exporter = new_exporter(dead, tmp_path)
    await exporter.start()
    try:
        records = [LogRecord(T0, body="x")]
        with pytest.raises(RetryableExportError) as caught:
            await exporter.export(Batch(Signal.LOGS, records, 10))
        assert caught.value.reason == "connection"
        assert caught.value.remaining is not None and len(caught.value.remaining) == 1
    finally:
        await exporter.stop()


Check = Callable[[Target, Path], Awaitable[None]]
CORE_CHECKS: list[Check] = [
    check_documents_land_in_data_streams_as_ecs,
    check_resent_records_are_not_duplicated,
    check_rejected_document_is_dead_lettered,
    check_index_template_is_installed,
    check_unreachable_endpoint_is_retried,
]


# -- against a real cluster ---------------------------------------------------------------------------

ES_URL = os.environ.get("BURNLINE_TEST_ES_URL", "")


def real_target() -> Target:
    exporter: dict[str, Any] = {}
    client: dict[str, Any] = {}
    if api_key := os.environ.get("BURNLINE_TEST_ES_API_KEY"):
        exporter["api_key"] = api_key
        client["api_key"] = api_key
    elif user := os.environ.get("BURNLINE_TEST_ES_USER"):
        password = os.environ.get("BURNLINE_TEST_ES_PASSWORD", "")
        exporter.update(user=user, password=password)
        client["basic_auth"] = (user, password)
    if ca := os.environ.get("BURNLINE_TEST_ES_CA"):
        exporter["tls"] = {"ca_file": ca}
        client["ca_certs"] = ca
    return Target(ES_URL, exporter, client)


@pytest.mark.opt_in
@pytest.mark.skipif(
    not ES_URL,
    reason="set BURNLINE_TEST_ES_URL (and BURNLINE_TEST_ES_API_KEY or BURNLINE_TEST_ES_USER/_PASSWORD) "
    "to run the exporter against a real Elasticsearch",
)
@pytest.mark.parametrize("check", CORE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_core_check_against_real_elasticsearch(check: Check, tmp_path: Path) -> None:
    await check(real_target(), tmp_path)
