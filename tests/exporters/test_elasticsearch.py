"""The Elasticsearch exporter against the Elasticsearch double: directly and through a QueueSender."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from fluent import sender as fluent_sender
from pydantic import ValidationError

from collector.core.component import RetryableExportError, registered
from collector.core.gzip_body import gzip_compress
from collector.core.model import (
    Batch,
    LogRecord,
    Scope,
    Signal,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    StatusCode,
)
from collector.core.telemetry import Telemetry
from collector.exporterhelper.queue import MemoryQueue
from collector.exporterhelper.sender import QueueSender
from exporters.elasticsearch.bulk import encode_request
from exporters.elasticsearch.client import BulkBodySerializer, make_client, node_class
from exporters.elasticsearch.client import retry_hint as _retry_after
from exporters.elasticsearch.ecs import document_ids
from exporters.elasticsearch.exporter import INLINE_ENCODE_RECORDS, ElasticsearchConfig, ElasticsearchExporter
from tests.doubles.elasticsearch import ElasticsearchDouble
from tests.exporters.test_elasticsearch_real import CORE_CHECKS, Check, Target, new_exporter
from tests.support import InjectReceiver, free_port, metric_value, running_service, wait_until

T0 = 1_714_564_800_000_000_000
RESOURCE = {
    "service.name": "checkout",
    "host.name": "node-a",
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "checkout-1",
    "k8s.pod.uid": "uid-1",
    "k8s.container.name": "app",
    "k8s.node.name": "node-a",
    "k8s.pod.label.app": "checkout",
    "k8s.pod.annotation.team": "payments",
}
FAST_RETRY = {"initial_interval": "10ms", "max_interval": "50ms", "randomization_factor": 0}


def logs(n: int, start: int = 0, **attributes: Any) -> list[LogRecord]:
    """``n`` log records numbered from ``start`` (attribute ``seq``), with extra ``attributes``."""
    return [
        LogRecord(
            time_unix_nano=T0 + i,
            body=f"line {i}",
            severity_number=9,
            attributes={"seq": i, **attributes},
            resource=RESOURCE,
        )
        for i in range(start, start + n)
    ]


def batch(records: list[Any]) -> Batch:
    return Batch(Signal.LOGS, records, 100 * len(records))


def sample(telemetry: Telemetry, name: str, **labels: str) -> float:
    value = telemetry.registry.get_sample_value(
        name, {"component": "elasticsearch", "signal": "logs", **labels}
    )
    return value or 0.0


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "deadletter" / "elasticsearch.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def messages(es: ElasticsearchDouble, pattern: str = "logs-*") -> list[str]:
    return sorted(d["message"] for d in es.documents(pattern))


@pytest.fixture
async def es() -> AsyncIterator[ElasticsearchDouble]:
    async with ElasticsearchDouble() as double:
        yield double


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


async def started(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry | None = None, **settings: Any
) -> ElasticsearchExporter:
    exporter = new_exporter(Target(es.url), tmp_path, telemetry, **settings)
    await exporter.start()
    return exporter


class Sending:
    """An exporter fed by a real queue and QueueSender, as the service runs it."""

    def __init__(self, exporter: ElasticsearchExporter, telemetry: Telemetry) -> None:
        self.exporter = exporter
        self.telemetry = telemetry
        self.queue = MemoryQueue("elasticsearch", exporter.config.queue, telemetry)
        self.sender = QueueSender(exporter, exporter.config, self.queue, telemetry)
        self.sender.start()

    async def put(self, records: list[LogRecord]) -> None:
        await self.queue.put(batch(records))

    def exported(self) -> float:
        return sample(self.telemetry, "burnline_records_exported_total")

    async def close(self) -> int:
        lost = await self.sender.drain(10.0)
        await self.exporter.stop()
        return lost


async def sending(es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry, **settings: Any) -> Sending:
    settings.setdefault("retry", FAST_RETRY)
    settings.setdefault("batch", {"flush_interval": "10ms"})
    return Sending(await started(es, tmp_path, telemetry, **settings), telemetry)


# -- the checks shared with the real-Elasticsearch test -------------------------------------------------


@pytest.mark.parametrize("check", CORE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_core_check_against_the_double(check: Check, es: ElasticsearchDouble, tmp_path: Path) -> None:
    await check(Target(es.url), tmp_path)


# -- the whole service: Fluent Forward in, Elasticsearch out -----------------------------------------------


async def test_fluent_bit_records_through_the_service_land_as_ecs_documents(
    es: ElasticsearchDouble, tmp_path: Path
) -> None:
    port = free_port()
    config = {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{port}"}},
        "exporters": {
            "elasticsearch": {"endpoints": [es.url], "batch": {"flush_interval": 0}, "retry": FAST_RETRY}
        },
        "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["elasticsearch"]}}},
    }
    kubernetes = {
        "namespace_name": "shop",
        "pod_name": "checkout-7d9f",
        "pod_id": "uid-7",
        "container_name": "app",
        "host": "node-a",
        "labels": {"app": "checkout"},
    }

    def emit() -> None:
        client = fluent_sender.FluentSender("kube", host="127.0.0.1", port=port, nanosecond_precision=True)
        try:
            for i in range(3):
                record = {"log": f"GET /cart {i}", "stream": "stdout", "kubernetes": kubernetes}
                assert client.emit_with_time("var.log", T0 / 1e9 + i, record), client.last_error
            assert client.emit_with_time("var.log", T0 / 1e9 + 3, {"log": "late", "kubernetes": kubernetes})
        finally:
            client.close()

    es.fail_items([201, 503])  # the second record is retried by the pipeline
    async with running_service(config, str(tmp_path)) as svc:
        await asyncio.to_thread(emit)
        await wait_until(lambda: es.count() == 4)
        exported = {"component": "elasticsearch", "signal": "logs"}
        await wait_until(lambda: metric_value(svc, "burnline_records_exported_total", exported) == 4)
        retried = {**exported, "reason": "item_503"}
        assert metric_value(svc, "burnline_export_retries_total", retried) == 1
    docs = sorted(es.documents("logs-generic-default"), key=lambda d: d["@timestamp"])
    assert [d["message"] for d in docs] == ["GET /cart 0", "GET /cart 1", "GET /cart 2", "late"]
    first = docs[0]
    assert first["@timestamp"] == "2024-05-01T12:00:00.000000000Z"
    assert first["kubernetes"]["namespace"] == "shop"
    assert first["kubernetes"]["pod"] == {"name": "checkout-7d9f", "uid": "uid-7"}
    assert first["kubernetes"]["container"] == {"name": "app"}
    assert first["kubernetes"]["node"] == {"name": "node-a"}
    assert first["kubernetes"]["labels"] == {"app": "checkout"}
    assert first["service"]["name"] == "checkout"
    assert first["log"]["iostream"] == "stdout"
    assert len(set(es.document_ids())) == 4


# -- documents and data streams -----------------------------------------------------------------------


async def test_records_land_in_their_data_streams_as_ecs_documents(
    es: ElasticsearchDouble, tmp_path: Path
) -> None:
    exporter = await started(es, tmp_path)
    records = [
        *logs(2),
        LogRecord(
            T0 + 9,
            body="routed",
            attributes={"data_stream.dataset": "Nginx-Access", "data_stream.namespace": "Prod"},
            resource=RESOURCE,
        ),
    ]
    assert await exporter.export(batch(records)) == 3
    await exporter.stop()

    assert set(es.data_streams) == {"logs-generic-default", "logs-nginx_access-prod"}
    backing = es.data_streams["logs-nginx_access-prod"].indices
    assert len(backing) == 1 and backing[0].startswith(".ds-logs-nginx_access-prod-")
    [routed] = es.documents("logs-nginx_access-prod")
    assert routed["data_stream"] == {"type": "logs", "dataset": "nginx_access", "namespace": "prod"}
    assert routed["event"]["dataset"] == "nginx_access"
    assert "attributes" not in routed
    first = sorted(es.documents("logs-generic-default"), key=lambda d: d["seq"])[0]
    assert first["@timestamp"] == "2024-05-01T12:00:00.000000000Z"
    assert first["message"] == "line 0"
    assert first["log"]["level"] == "info"
    assert first["service"]["name"] == "checkout"
    assert first["host"]["name"] == "node-a"
    assert first["kubernetes"] == {
        "namespace": "shop",
        "pod": {"name": "checkout-1", "uid": "uid-1"},
        "container": {"name": "app"},
        "node": {"name": "node-a"},
        "labels": {"app": "checkout"},
        "annotations": {"team": "payments"},
    }
    # Every bulk used create (data streams take nothing else) with the exporter's own _ids.
    [request] = es.bulk_requests
    actions = [orjson.loads(line) for line in request.body.splitlines()[::2]]
    assert all(set(a) == {"create"} and len(a["create"]["_id"]) == 22 for a in actions)


async def test_fixed_routing_ignores_attributes(es: ElasticsearchDouble, tmp_path: Path) -> None:
    exporter = await started(
        es, tmp_path, data_stream={"dataset": "app", "namespace": "staging", "dynamic": False}
    )
    routed: dict[str, Any] = {"data_stream.dataset": "other"}
    assert await exporter.export(batch(logs(2, **routed))) == 2
    await exporter.stop()
    assert set(es.data_streams) == {"logs-app-staging"}


async def test_records_that_cannot_be_encoded_are_dead_lettered(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    exporter = await started(es, tmp_path, telemetry)
    assert await exporter.export(batch([*logs(2), {"not": "a log record"}])) == 2
    await exporter.stop()
    [letter] = dead_letters(tmp_path)
    assert letter["reason"] == "encode_error"
    assert letter["record"]["record"] == {"not": "a log record"}
    assert "expected a LogRecord" in letter["record"]["error"]["reason"]
    assert sample(telemetry, "burnline_records_failed_total", reason="encode_error") == 1


# -- per-item outcomes --------------------------------------------------------------------------------


async def test_429_and_500_items_are_retried_and_400_items_dead_lettered(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    exporter = await started(es, tmp_path, telemetry)
    records = logs(5)
    es.fail_items([201, 429, 500, 400, 201])
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(records))
    exc = caught.value
    assert (exc.delivered, exc.rejected) == (2, 1)
    assert exc.reason == "item_429"
    assert exc.remaining is not None
    assert [item.record for item in exc.remaining.items] == records[1:3]
    assert messages(es) == ["line 0", "line 4"]

    [letter] = dead_letters(tmp_path)
    assert letter["reason"] == "document_parsing_exception"
    assert letter["record"]["error"]["type"] == "document_parsing_exception"
    assert "failed to parse" in letter["record"]["error"]["reason"]
    assert letter["record"]["document"]["message"] == "line 3"
    assert letter["record"]["index"] == "logs-generic-default"
    assert letter["record"]["record"]["body"] == "line 3"
    assert sample(telemetry, "burnline_records_failed_total", reason="document_parsing_exception") == 1

    # The retry resends the same bytes (same _ids) for just the two records left.
    assert await exporter.export(exc.remaining) == 2
    assert messages(es) == ["line 0", "line 1", "line 2", "line 4"]
    sent_again = es.bulk_requests[-1].body.splitlines()
    assert len(sent_again) == 4
    await exporter.stop()


async def test_sender_delivers_everything_once_despite_item_failures(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    run = await sending(es, tmp_path, telemetry)
    es.fail_items([429, 201, 503, 400, 429])
    await run.put(logs(10))
    await wait_until(lambda: run.exported() == 9)
    assert await run.close() == 0
    assert es.count() == 9
    assert len(set(es.document_ids())) == 9
    assert sample(telemetry, "burnline_records_failed_total", reason="document_parsing_exception") == 1
    assert sample(telemetry, "burnline_export_retries_total", reason="item_429") >= 1


async def test_item_rejected_for_missing_privilege_is_dead_lettered(tmp_path: Path) -> None:
    async with ElasticsearchDouble(writable=["logs-generic-*"]) as es:
        exporter = await started(es, tmp_path)
        secret: dict[str, Any] = {"data_stream.dataset": "secret"}
        records = [*logs(1), *logs(1, start=1, **secret)]
        assert await exporter.export(batch(records)) == 1
        await exporter.stop()
    [letter] = dead_letters(tmp_path)
    assert letter["reason"] == "security_exception"
    assert letter["record"]["index"] == "logs-secret-default"
    assert "unauthorized" in letter["record"]["error"]["reason"]


async def test_mapping_conflict_is_dead_lettered_with_the_reason(
    es: ElasticsearchDouble, tmp_path: Path
) -> None:
    exporter = await started(es, tmp_path)
    assert await exporter.export(batch(logs(1, order={"id": 1}))) == 1
    assert await exporter.export(batch(logs(2, start=1, order="o-2")[:1] + logs(1, start=2))) == 1
    await exporter.stop()
    [letter] = dead_letters(tmp_path)
    assert letter["reason"] == "document_parsing_exception"
    assert "object mapping for [order]" in letter["record"]["error"]["reason"]
    assert letter["detail"] == letter["record"]["error"]["reason"]


# -- answers lost, whole requests failing ---------------------------------------------------------------


async def test_retry_of_a_bulk_that_landed_answers_409_and_duplicates_nothing(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    exporter = await started(es, tmp_path, telemetry)
    records = logs(6)
    es.lose_responses(1)  # applied, then a proxy answers 504
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(records))
    assert caught.value.reason == "http_504"
    assert caught.value.remaining is not None and len(caught.value.remaining) == 6
    assert es.count() == 6
    assert await exporter.export(caught.value.remaining) == 6
    await exporter.stop()
    assert es.count() == 6
    [_, retry] = es.bulk_requests
    assert orjson.loads(es.requests[-1].body.splitlines()[0]) == orjson.loads(retry.body.splitlines()[0])


async def test_sender_counts_a_landed_retry_once(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    run = await sending(es, tmp_path, telemetry)
    es.lose_responses(2)
    await run.put(logs(5))
    await wait_until(lambda: run.exported() == 5)
    assert await run.close() == 0
    assert es.count() == 5 and len(es.bulk_requests) == 3
    assert sample(telemetry, "burnline_export_retries_total", reason="http_504") == 2


async def test_whole_request_503_is_retried_with_its_retry_after(
    es: ElasticsearchDouble, tmp_path: Path
) -> None:
    exporter = await started(es, tmp_path)
    records = logs(3)
    es.fail_requests(1, status=503, retry_after=2)
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(records))
    exc = caught.value
    assert (exc.reason, exc.retry_after, exc.delivered, exc.rejected) == ("http_503", 2.0, 0, 0)
    assert exc.remaining is not None and [i.record for i in exc.remaining.items] == records
    assert es.count() == 0
    assert await exporter.export(exc.remaining) == 3
    await exporter.stop()


async def test_whole_request_429_through_the_sender(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    run = await sending(es, tmp_path, telemetry)
    es.fail_requests(2, status=429, retry_after=0.05)
    es.fail_requests(1, status=502, proxy=True)  # a proxy's HTML page, no product header
    await run.put(logs(4))
    await wait_until(lambda: run.exported() == 4)
    assert await run.close() == 0
    assert es.count() == 4
    assert sample(telemetry, "burnline_export_retries_total", reason="http_429") == 2
    assert sample(telemetry, "burnline_export_retries_total", reason="http_502") == 1


@pytest.mark.parametrize(
    ("status", "proxy", "retried"),
    [
        (400, False, False),  # Elasticsearch says the request itself is malformed: resending cannot help
        (400, True, True),  # a proxy's 400 says nothing about the records
        (403, False, True),  # configuration: retried (loudly) so the backlog keeps its order
        (404, True, True),
        (408, False, True),
    ],
)
async def test_whole_request_client_errors(
    status: int, proxy: bool, retried: bool, es: ElasticsearchDouble, tmp_path: Path
) -> None:
    exporter = await started(es, tmp_path)
    es.fail_requests(1, status=status, proxy=proxy)
    if retried:
        with pytest.raises(RetryableExportError) as caught:
            await exporter.export(batch(logs(2)))
        assert caught.value.reason == f"http_{status}"
        assert dead_letters(tmp_path) == []
        assert caught.value.remaining is not None
        assert await exporter.export(caught.value.remaining) == 2
    else:
        assert await exporter.export(batch(logs(2))) == 0
        letters = dead_letters(tmp_path)
        assert [letter["reason"] for letter in letters] == ["document_parsing_exception"] * 2
    await exporter.stop()


def test_retry_after_header_forms() -> None:
    assert _retry_after({"retry-after": "7"}) == 7.0
    assert _retry_after({"retry-after": "-3"}) == 0.0
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    hint = _retry_after({"retry-after": later})
    assert hint is not None and 55 <= hint <= 61
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None


async def test_oversized_requests_are_split_and_a_too_large_record_dead_lettered(tmp_path: Path) -> None:
    async with ElasticsearchDouble(max_content_length=4000) as es:
        exporter = await started(es, tmp_path)
        records = logs(20, padding="p" * 150)
        giant = LogRecord(T0 + 99, body="g" * 5000)
        assert await exporter.export(batch([*records, giant])) == 20
        await exporter.stop()
        assert es.count() == 20
        assert sum(1 for r in es.bulk_requests if r.status == 413) >= 2
    [letter] = dead_letters(tmp_path)
    assert letter["reason"] == "request_too_large"
    assert letter["record"]["document"]["message"] == "g" * 5000


async def test_outage_then_recovery_on_the_same_port_delivers_everything_once(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    run = await sending(es, tmp_path, telemetry)
    await run.put(logs(5))
    await wait_until(lambda: es.count() == 5)
    await es.stop()
    await run.put(logs(5, start=5))
    await run.put(logs(5, start=10))
    await wait_until(lambda: sample(telemetry, "burnline_export_retries_total", reason="connection") >= 2)
    assert run.exported() == 5
    await es.start()
    await wait_until(lambda: run.exported() == 15)
    assert await run.close() == 0
    assert es.count() == 15
    assert len(set(es.document_ids())) == 15
    assert messages(es) == sorted(f"line {i}" for i in range(15))


async def test_start_while_elasticsearch_is_down(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    es = ElasticsearchDouble()
    exporter = new_exporter(Target(es.url), tmp_path, template={"install": True})
    with caplog.at_level(logging.WARNING):
        await exporter.start()
    assert "not reachable at start" in caplog.text
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(logs(2)))
    assert caught.value.reason == "connection"
    async with es:
        assert await exporter.export(batch(logs(2))) == 2
        await exporter.stop()
    # The template went in before the first bulk request created the data stream.
    paths = [(r.method, r.path) for r in es.requests]
    assert paths.index(("PUT", "/_index_template/burnline-logs")) < paths.index(("PUT", "/_bulk"))
    assert es.data_streams["logs-generic-default"].template == "burnline-logs"


async def test_retries_exhausted_keep_the_document_and_id(tmp_path: Path, telemetry: Telemetry) -> None:
    es = ElasticsearchDouble()  # never started: nothing listens
    run = await sending(es, tmp_path, telemetry, retry={**FAST_RETRY, "max_elapsed_time": "100ms"})
    await run.put(logs(2))
    await wait_until(
        lambda: sample(telemetry, "burnline_records_failed_total", reason="retries_exhausted") == 2
    )
    assert await run.close() == 0
    letters = dead_letters(tmp_path)
    assert [letter["record"]["document"]["message"] for letter in letters] == ["line 0", "line 1"]
    assert all(len(letter["record"]["id"]) == 22 for letter in letters)


async def test_many_workers_deliver_every_record_once(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    run = await sending(es, tmp_path, telemetry, concurrency=4, batch={"max_records": 7, "flush_interval": 0})
    es.fail_items([429] * 5)
    for start in range(0, 200, 20):
        await run.put(logs(20, start=start))
    await wait_until(lambda: run.exported() == 200)
    assert await run.close() == 0
    assert es.count() == 200 and len(set(es.document_ids())) == 200


# -- credentials --------------------------------------------------------------------------------------


async def test_api_key_authentication(tmp_path: Path) -> None:
    async with ElasticsearchDouble(api_key=("key-id", "s3cret")) as es:
        exporter = await started(es, tmp_path, api_key="key-id:s3cret")
        assert await exporter.export(batch(logs(2))) == 2
        await exporter.stop()
        encoded = base64.b64encode(b"key-id:s3cret").decode()
        assert {r.headers["authorization"] for r in es.requests} == {f"ApiKey {encoded}"}
        # The encoded form Kibana shows works as well.
        exporter = await started(es, tmp_path, api_key=encoded)
        assert await exporter.export(batch(logs(1, start=5))) == 1
        await exporter.stop()


async def test_basic_authentication(tmp_path: Path) -> None:
    async with ElasticsearchDouble(username="burnline", password="pw") as es:
        exporter = await started(es, tmp_path, user="burnline", password="pw")
        assert await exporter.export(batch(logs(2))) == 2
        await exporter.stop()
        expected = "Basic " + base64.b64encode(b"burnline:pw").decode()
        assert {r.headers["authorization"] for r in es.requests} == {expected}


async def test_rejected_credentials_are_retried_loudly_never_dead_lettered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with ElasticsearchDouble(api_key=("key-id", "right")) as es:
        exporter = await started(es, tmp_path, api_key="key-id:wrong")
        with caplog.at_level(logging.ERROR), pytest.raises(RetryableExportError) as caught:
            await exporter.export(batch(logs(3)))
        await exporter.stop()
    assert caught.value.reason == "http_401"
    assert caught.value.remaining is not None and len(caught.value.remaining) == 3
    assert "rejected the credentials" in caplog.text and "retried until this is fixed" in caplog.text
    assert dead_letters(tmp_path) == []


async def test_credentials_without_monitor_privilege_still_export(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with ElasticsearchDouble(monitor=False) as es:
        with caplog.at_level(logging.WARNING):
            exporter = await started(es, tmp_path)
        assert "could not read Elasticsearch cluster info" in caplog.text
        assert await exporter.export(batch(logs(2))) == 2
        await exporter.stop()


# -- wire format --------------------------------------------------------------------------------------


async def test_request_bodies_are_gzipped_by_default(es: ElasticsearchDouble, tmp_path: Path) -> None:
    exporter = await started(es, tmp_path)
    assert await exporter.export(batch(logs(50))) == 50
    await exporter.stop()
    [bulk] = es.bulk_requests
    assert bulk.headers["content-encoding"] == "gzip"
    assert bulk.wire_size < len(bulk.body) / 3
    assert bulk.headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=9"
    assert bulk.headers["accept-encoding"] == "gzip"
    assert "items.*.status" in bulk.query["filter_path"]


async def test_compression_can_be_turned_off(es: ElasticsearchDouble, tmp_path: Path) -> None:
    exporter = await started(es, tmp_path, compression="none")
    assert await exporter.export(batch(logs(5))) == 5
    await exporter.stop()
    [bulk] = es.bulk_requests
    assert "content-encoding" not in bulk.headers
    assert bulk.wire_size == len(bulk.body)


async def test_ingest_pipeline_is_passed_on(es: ElasticsearchDouble, tmp_path: Path) -> None:
    exporter = await started(es, tmp_path, pipeline="parse-nginx")
    assert await exporter.export(batch(logs(1))) == 1
    await exporter.stop()
    assert es.bulk_requests[0].query["pipeline"] == "parse-nginx"


async def test_elasticsearch_8_is_spoken_to_in_its_compatibility_headers(tmp_path: Path) -> None:
    async with ElasticsearchDouble(version="8.17.0") as es:
        exporter = await started(es, tmp_path)
        assert await exporter.export(batch(logs(2))) == 2
        await exporter.stop()
        first, *rest = es.requests
        assert first.status == 400  # the 9.x client's own headers, refused as 8.x refuses them
        assert rest and all("compatible-with=8" in r.headers["accept"] for r in rest)
        assert es.count() == 2


async def test_index_template_only_when_configured(es: ElasticsearchDouble, tmp_path: Path) -> None:
    exporter = await started(es, tmp_path)
    assert await exporter.export(batch(logs(1))) == 1
    await exporter.stop()
    assert set(es.templates) == {"logs", "traces"}  # Elasticsearch's built-in ones
    assert es.data_streams["logs-generic-default"].template == "logs"

    exporter = await started(es, tmp_path, template={"install": True}, data_stream={"dataset": "web"})
    assert await exporter.export(batch(logs(1))) == 1
    await exporter.stop()
    template = es.templates["burnline-logs"]
    assert template["index_patterns"] == ["logs-*-*"] and template["priority"] == 150
    assert "data_stream" in template and "logs@mappings" in template["composed_of"]
    assert es.data_streams["logs-web-default"].template == "burnline-logs"
    [backing] = es.data_streams["logs-web-default"].indices
    assert es.indices[backing].kinds["@timestamp"] == "date_nanos"
    # No span was sent: the cluster's traces-* mappings are left alone.
    assert "burnline-traces" not in es.templates


async def test_template_refused_is_logged_and_export_goes_on(
    es: ElasticsearchDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    es.templates["someone-else"] = {"index_patterns": ["logs-*-*"], "priority": 150}
    with caplog.at_level(logging.ERROR):
        exporter = await started(es, tmp_path, template={"install": True})
    assert "could not install index template 'burnline-logs'" in caplog.text
    assert await exporter.export(batch(logs(1))) == 1
    await exporter.stop()


# -- configuration ------------------------------------------------------------------------------------


def test_registered_under_its_type_name() -> None:
    assert registered("exporter")["elasticsearch"] is ElasticsearchExporter
    assert ElasticsearchExporter.signals == {Signal.LOGS, Signal.TRACES}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"endpoints": []}, "at least 1"),
        ({"endpoints": ["es:9200"]}, "not an Elasticsearch URL"),
        ({"endpoints": ["https://u:p@es:9200"]}, "not in the URL"),
        ({"user": "u"}, "go together"),
        ({"api_key": "k", "user": "u", "password": "p"}, "not both"),
        ({"tls": {"insecure_skip_verify": True}}, "not https://"),
        ({"data_stream": {"dataset": "My-App"}}, "'my_app'"),
        ({"data_stream": {"namespace": "a b"}}, "not a valid data stream namespace"),
        ({"data_stream": {"traces_dataset": "Shop-Traces"}}, "'shop_traces'"),
        ({"template": {"traces_name": "burnline-logs"}}, "each template needs its own"),
        ({"template": {"traces_index_patterns": []}}, "at least 1"),
        ({"compression": "zstd"}, "compression"),
        ({"request_timeout": 0}, "more than 0"),
        ({"template": {"index_patterns": []}}, "at least 1"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_config_errors_are_clear(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ElasticsearchConfig.model_validate({"endpoints": ["http://es:9200"], **settings})
    assert problem in str(caught.value)


def test_config_defaults() -> None:
    config = ElasticsearchConfig.model_validate({"endpoints": ["https://es:9200/"]})
    assert config.endpoints == ["https://es:9200"]
    assert (config.compression, config.compression_level, config.request_timeout) == ("gzip", 1, 30.0)
    assert (config.data_stream.dataset, config.data_stream.namespace) == ("generic", "default")
    assert config.data_stream.traces_dataset == "generic"
    assert config.template.install is False
    assert (config.template.name, config.template.traces_name) == ("burnline-logs", "burnline-traces")
    assert config.template.traces_index_patterns == ["traces-*-*"]


# -- spans --------------------------------------------------------------------------------------------

TRACE = "5b8efff798038103d269b633813fc60c"


def spans(n: int, start: int = 0, trace_id: str = TRACE, **attributes: Any) -> list[Span]:
    """A trace of ``n`` spans numbered from ``start`` (attribute ``seq``): the first the root, each
    other a child of the one before."""
    out = []
    for i in range(start, start + n):
        out.append(
            Span(
                trace_id=trace_id,
                span_id=f"{i + 1:016x}",
                parent_span_id=f"{i:016x}" if i else "",
                name=f"op {i}",
                start_time_unix_nano=T0 + i * 1000,
                end_time_unix_nano=T0 + i * 1000 + 250_000_000,
                kind=SpanKind.SERVER if i == 0 else SpanKind.CLIENT,
                attributes={"seq": i, **attributes},
                resource=RESOURCE,
            )
        )
    return out


def span_batch(items: list[Any]) -> Batch:
    return Batch(Signal.TRACES, items, 200 * len(items))


async def test_spans_land_in_the_traces_data_stream_as_ecs_documents(
    es: ElasticsearchDouble, tmp_path: Path
) -> None:
    exporter = await started(es, tmp_path)
    failed = Span(
        TRACE,
        "00000000000000aa",
        "GET /pay",
        T0 + 7,
        T0 + 7 + 1_500_000,
        parent_span_id="0000000000000001",
        kind=SpanKind.SERVER,
        status_code=StatusCode.ERROR,
        status_message="card declined",
        attributes={"http.response.status_code": 402, "db.system": "postgresql"},
        events=[SpanEvent(T0 + 8, "exception", {"exception.type": "Declined", "exception.message": "no"})],
        links=[SpanLink("ab" * 16, "cd" * 8)],
        resource=RESOURCE,
        scope=Scope("payments", "1.2.0"),
    )
    assert await exporter.export(span_batch([*spans(2), failed])) == 3
    await exporter.stop()

    # Elasticsearch's built-in traces template made the data stream; logs went nowhere.
    assert set(es.data_streams) == {"traces-generic-default"}
    assert es.data_streams["traces-generic-default"].template == "traces"
    [backing] = es.data_streams["traces-generic-default"].indices
    assert backing.startswith(".ds-traces-generic-default-")
    assert sorted(es.document_ids()) == sorted(
        [TRACE + "0000000000000001", TRACE + "0000000000000002", TRACE + "00000000000000aa"]
    )
    docs = {d["span"]["id"]: d for d in es.documents("traces-generic-default")}
    root = docs["0000000000000001"]
    assert root["@timestamp"] == "2024-05-01T12:00:00.000000000Z"
    assert root["trace"] == {"id": TRACE}
    assert "parent" not in root
    assert root["span"] == {"id": "0000000000000001", "name": "op 0", "kind": "SERVER"}
    assert root["event"] == {"duration": 250_000_000, "outcome": "unknown"}
    assert root["service"]["name"] == "checkout"
    assert root["kubernetes"]["pod"] == {"name": "checkout-1", "uid": "uid-1"}
    assert root["data_stream"] == {"type": "traces", "dataset": "generic", "namespace": "default"}
    assert docs["0000000000000002"]["parent"] == {"id": "0000000000000001"}

    pay = docs["00000000000000aa"]
    assert pay["event"] == {"duration": 1_500_000, "outcome": "failure"}
    assert pay["span"]["status"] == {"message": "card declined"}
    assert pay["span"]["db"] == {"type": "postgresql"}
    assert pay["span"]["events"] == [
        {
            "time": "2024-05-01T12:00:00.000000008Z",
            "name": "exception",
            "attributes": {"exception.type": "Declined", "exception.message": "no"},
        }
    ]
    assert pay["span"]["links"] == [{"trace": {"id": "ab" * 16}, "span": {"id": "cd" * 8}}]
    assert pay["service"]["framework"] == {"name": "payments", "version": "1.2.0"}
    assert pay["http"]["response"]["status_code"] == 402
    # Every operation was a create with the span's own identity as _id.
    [request] = es.bulk_requests
    actions = [orjson.loads(line) for line in request.body.splitlines()[::2]]
    assert [a["create"]["_index"] for a in actions] == ["traces-generic-default"] * 3
    assert [a["create"]["_id"] for a in actions][-1] == TRACE + "00000000000000aa"


async def test_resent_spans_answer_409_and_count_as_delivered(
    es: ElasticsearchDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = await started(es, tmp_path)
    trace = spans(4)
    es.lose_responses(1)  # applied, then a proxy answers 504
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(span_batch(trace))
    assert caught.value.remaining is not None and len(caught.value.remaining) == 4
    assert es.count("traces-*") == 4
    with caplog.at_level(logging.INFO):
        assert await exporter.export(caught.value.remaining) == 4
    assert "4 record(s) were already in Elasticsearch" in caplog.text
    [first, retry] = es.bulk_requests
    assert retry.body == first.body  # the same bytes: the same _ids
    # The same spans again in a new batch (a client that resent them): still one document each.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert await exporter.export(span_batch([*spans(4), *spans(1, start=4)])) == 5
    assert "4 record(s) were already in Elasticsearch" in caplog.text
    await exporter.stop()
    assert es.count("traces-*") == 5 and len(set(es.document_ids("traces-*"))) == 5
    assert dead_letters(tmp_path) == []


async def test_sender_delivers_spans_once_through_item_failures(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    run = await sending(es, tmp_path, telemetry)
    es.fail_items([429, 201, 503])
    await run.queue.put(span_batch(spans(6)))
    exported = {"component": "elasticsearch", "signal": "traces"}
    await wait_until(
        lambda: telemetry.registry.get_sample_value("burnline_records_exported_total", exported) == 6
    )
    assert await run.close() == 0
    assert es.count("traces-generic-default") == 6


async def test_traces_dataset_and_dynamic_routing(es: ElasticsearchDouble, tmp_path: Path) -> None:
    exporter = await started(
        es, tmp_path, data_stream={"dataset": "app", "traces_dataset": "shop", "namespace": "prod"}
    )
    routed = spans(1, start=1, **{"data_stream.dataset": "Payments"})
    assert await exporter.export(span_batch([*spans(1), *routed])) == 2
    assert await exporter.export(batch(logs(1))) == 1
    await exporter.stop()
    assert set(es.data_streams) == {"traces-shop-prod", "traces-payments-prod", "logs-app-prod"}
    [doc] = es.documents("traces-payments-prod")
    assert doc["data_stream"] == {"type": "traces", "dataset": "payments", "namespace": "prod"}


async def test_spans_that_cannot_be_encoded_are_dead_lettered(
    es: ElasticsearchDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    exporter = await started(es, tmp_path, telemetry)
    no_trace = Span("", "00000000000000ff", "lost", T0, T0 + 1)
    items = [*spans(2), no_trace, logs(1)[0]]
    assert await exporter.export(span_batch(items)) == 2
    await exporter.stop()
    letters = dead_letters(tmp_path)
    assert [letter["reason"] for letter in letters] == ["encode_error", "encode_error"]
    assert "trace id '' is not 32 hex digits" in letters[0]["record"]["error"]["reason"]
    assert letters[0]["record"]["record"]["name"] == "lost"
    assert "expected a Span" in letters[1]["record"]["error"]["reason"]
    failed = telemetry.registry.get_sample_value(
        "burnline_records_failed_total",
        {"component": "elasticsearch", "signal": "traces", "reason": "encode_error"},
    )
    assert failed == 2


async def test_traces_template_goes_in_before_the_first_span(es: ElasticsearchDouble, tmp_path: Path) -> None:
    exporter = await started(es, tmp_path, template={"install": True})
    assert "burnline-logs" in es.templates and "burnline-traces" not in es.templates
    # Event attributes of different shapes across spans: the flattened mapping takes both.
    shaped = spans(2)
    shaped[0].events = [SpanEvent(T0, "e", {"detail": "a value"})]
    shaped[1].events = [SpanEvent(T0, "e", {"detail": {"code": 7}})]
    assert await exporter.export(span_batch(shaped)) == 2
    assert await exporter.export(span_batch(spans(1, start=2))) == 1
    await exporter.stop()
    paths = [(r.method, r.path) for r in es.requests]
    assert paths.count(("PUT", "/_index_template/burnline-traces")) == 1
    assert paths.index(("PUT", "/_index_template/burnline-traces")) < paths.index(("PUT", "/_bulk"))
    template = es.templates["burnline-traces"]
    assert template["index_patterns"] == ["traces-*-*"] and template["priority"] == 150
    assert "traces@mappings" in template["composed_of"] and "data_stream" in template
    assert es.data_streams["traces-generic-default"].template == "burnline-traces"
    [backing] = es.data_streams["traces-generic-default"].indices
    kinds = es.indices[backing].kinds
    assert kinds["@timestamp"] == "date_nanos" and kinds["span.events.attributes"] == "flattened"
    assert kinds["event.duration"] == "long"
    assert dead_letters(tmp_path) == []


async def test_without_the_template_conflicting_event_shapes_are_dead_lettered(
    es: ElasticsearchDouble, tmp_path: Path
) -> None:
    """Why the traces template maps event attributes as flattened: dynamic mapping cannot take both."""
    exporter = await started(es, tmp_path)
    shaped = spans(2)
    shaped[0].events = [SpanEvent(T0, "e", {"detail": "a value"})]
    shaped[1].events = [SpanEvent(T0, "e", {"detail": {"code": 7}})]
    assert await exporter.export(span_batch(shaped)) == 1
    await exporter.stop()
    [letter] = dead_letters(tmp_path)
    assert letter["reason"] == "document_parsing_exception"


async def test_spans_through_the_service_land_in_elasticsearch(
    es: ElasticsearchDouble, tmp_path: Path
) -> None:
    config = {
        "receivers": {"inject": {}},
        "exporters": {
            "elasticsearch": {"endpoints": [es.url], "batch": {"flush_interval": 0}, "retry": FAST_RETRY}
        },
        "service": {"pipelines": {"traces": {"receivers": ["inject"], "exporters": ["elasticsearch"]}}},
    }
    es.fail_items([201, 503])  # the second span is retried by the pipeline
    async with running_service(config, str(tmp_path)) as svc:
        receiver = svc.receivers["inject"]
        assert isinstance(receiver, InjectReceiver)
        trace: list[Any] = spans(3)  # (push is typed for log records; it takes any signal's items)
        await receiver.push(trace, Signal.TRACES)
        exported = {"component": "elasticsearch", "signal": "traces"}
        await wait_until(lambda: metric_value(svc, "burnline_records_exported_total", exported) == 3)
        assert metric_value(svc, "burnline_export_retries_total", {**exported, "reason": "item_503"}) == 1
    names = sorted(d["span"]["name"] for d in es.documents("traces-generic-default"))
    assert names == ["op 0", "op 1", "op 2"]


# -- the double itself answers like Elasticsearch --------------------------------------------------------


async def test_double_enforces_content_type_and_product_header(es: ElasticsearchDouble) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{es.url}/_bulk", data=b"{}\n", headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 406
            assert resp.headers["X-Elastic-Product"] == "Elasticsearch"
            assert await resp.json() == {
                "error": "Content-Type header [text/plain] is not supported",
                "status": 406,
            }
        compat7 = "application/vnd.elasticsearch+x-ndjson; compatible-with=7"
        async with http.post(
            f"{es.url}/_bulk",
            data=b'{"create":{"_index":"logs-a-b"}}\n{"@timestamp":"2024-01-01T00:00:00Z"}\n',
            headers={"Content-Type": compat7, "Accept": compat7.replace("x-ndjson", "json")},
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "media_type_header_exception"
        async with http.post(
            f"{es.url}/_bulk",
            data=gzip.compress(b'{"index":{"_index":"logs-a-b"}}\n{"@timestamp":"2024-01-01T00:00:00Z"}\n'),
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        ) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
            [item] = (await resp.json())["items"]
            assert item["index"]["status"] == 400
            assert "op_type of create" in item["index"]["error"]["reason"]
        async with http.post(
            f"{es.url}/logs-a-b/_bulk",  # the index from the path
            data=b'{"create":{}}\n{"message":"no time"}\n',
            headers={"Content-Type": "application/json"},
        ) as resp:
            [item] = (await resp.json())["items"]
            assert item["create"]["status"] == 400
            assert "[@timestamp] is missing" in item["create"]["error"]["reason"]
        async with http.post(
            f"{es.url}/_bulk", data=b'{"create":{}}', headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
            assert "terminated by a newline" in (await resp.json())["error"]["reason"]


def test_encoded_bulk_bodies_go_out_as_they_are_and_anything_else_is_still_serialized() -> None:
    config = ElasticsearchConfig(endpoints=["http://127.0.0.1:9200"])
    serializers = make_client(config, node_class(config)).transport.serializers
    body = b'{"create":{"_index":"logs-generic-default","_id":"a"}}\n{"message":"x"}\n'
    for mimetype in ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson; compatible-with=9"):
        serializer = serializers.get_serializer(mimetype)
        assert isinstance(serializer, BulkBodySerializer)
        assert serializer.dumps(body) is body  # no copy
        assert serializer.dumps(body[:-1]) == body  # the final newline NDJSON needs, as before
        assert serializer.dumps([{"create": {}}, {"message": "x"}]) == b'{"create":{}}\n{"message":"x"}\n'


async def test_a_batch_up_to_the_inline_bound_is_encoded_on_the_loop_and_a_larger_one_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Encoding holds the GIL: a thread only adds hand-offs, so the usual batch is encoded inline.
    encoded_on: list[int] = []

    def recording(*args: Any) -> Any:
        encoded_on.append(threading.get_ident())
        return encode_request(*args)

    monkeypatch.setattr("exporters.elasticsearch.exporter.encode_request", recording)
    exporter = new_exporter(Target("http://127.0.0.1:9"), tmp_path)  # to_request needs no cluster
    for n in (INLINE_ENCODE_RECORDS, INLINE_ENCODE_RECORDS + 1):
        request = await exporter.to_request(Batch(Signal.LOGS, logs(n), 100 * n))
        assert [item.doc_id for item in request.items] == document_ids(logs(n))
    assert encoded_on[0] == threading.get_ident()
    assert encoded_on[1] != threading.get_ident()


@pytest.mark.parametrize("level", [1, 6])
async def test_level_1_gzips_on_the_loop_and_zlibs_levels_in_a_thread(
    es: ElasticsearchDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: int
) -> None:
    compressed_on: list[int] = []

    def recording(data: bytes, at: int) -> bytes:
        compressed_on.append(threading.get_ident())
        return gzip_compress(data, at)

    monkeypatch.setattr("collector.core.gzip_body.gzip_compress", recording)
    exporter = await started(es, tmp_path, compression_level=level)
    assert await exporter.export(batch(logs(50))) == 50
    await exporter.stop()
    [bulk] = es.bulk_requests
    assert bulk.headers["content-encoding"] == "gzip" and bulk.wire_size < len(bulk.body) / 3
    on_loop = [ident == threading.get_ident() for ident in compressed_on]
    assert on_loop == [level == 1] * len(on_loop) and on_loop
