"""Export requests: the default request, the sender's split/retry/dead-letter of requests, and the
Elasticsearch and OTLP requests that a retry resends without converting the records again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import orjson
import pytest

import exporters.otlp.exporter as otlp_exporter_module
from collector.core.component import (
    ComponentContext,
    Exporter,
    PermanentExportError,
    RetryableExportError,
)
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from collector.exporterhelper.queue import MemoryQueue
from collector.exporterhelper.request import BatchRequest, ExportRequest, split_step
from collector.exporterhelper.sender import ExporterConfig, QueueSender
from exporters.elasticsearch import exporter as es_exporter_module
from exporters.elasticsearch.bulk import BulkRequest
from exporters.otlp.request import OTLPRequest, Payload
from tests.doubles.elasticsearch import ElasticsearchDouble
from tests.doubles.otlp_endpoint import OTLPEndpointDouble
from tests.exporters.test_elasticsearch import logs
from tests.exporters.test_elasticsearch_real import Target
from tests.exporters.test_elasticsearch_real import new_exporter as new_es_exporter
from tests.exporters.test_otlp_exporter import endpoint_settings, spans
from tests.exporters.test_otlp_exporter import new_exporter as new_otlp_exporter
from tests.support import wait_until

FAST_RETRY = {"initial_interval": "10ms", "max_interval": "50ms", "randomization_factor": 0}


def sample(t: Telemetry, name: str, component: str, signal: str = "logs", **labels: str) -> float:
    return t.registry.get_sample_value(name, {"component": component, "signal": signal, **labels}) or 0.0


def dead_letters(tmp_path: Path, component: str) -> list[dict[str, Any]]:
    path = tmp_path / "deadletter" / f"{component}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


# ---------------------------------------------------------------------------------------------------
# The default request


def test_batch_request_splits_like_the_batch_and_dead_letters_with_the_view() -> None:
    request = BatchRequest(Batch(Signal.LOGS, list(range(10)), 1000), view=lambda i: {"n": i})
    assert (request.items_count, len(request), request.size_bytes) == (10, 10, 1000)
    pieces = request.split(4)
    assert [p.items for p in pieces] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [p.size_bytes for p in pieces] == [400, 400, 200]
    assert all(isinstance(p, BatchRequest) for p in pieces)
    assert pieces[2].dead_letter_records() == [{"n": 8}, {"n": 9}]  # the view travels with the pieces
    assert request.split(10) == [request]
    assert [len(p) for p in request.pieces(100, 300)] == [3, 3, 3, 1]  # by the average item size
    assert BatchRequest(Batch(Signal.LOGS, [], 0)).pieces(4, 100) == []


def test_split_step() -> None:
    assert split_step(10, 1000, 4, 10_000) == 4
    assert split_step(10, 1000, 100, 300) == 3
    assert split_step(3, 0, 100, 1) == 1  # never less than one item


# ---------------------------------------------------------------------------------------------------
# The sender works on the exporter's own request


class Encoded:
    def __init__(self, record: int) -> None:
        self.record = record
        self.wire = f"<{record}>".encode()


class EncodedRequest(ExportRequest):
    def __init__(self, signal: Signal, items: list[Encoded]) -> None:
        self.signal = signal
        self._items = items

    @property
    def items(self) -> list[Encoded]:
        return self._items

    @property
    def size_bytes(self) -> int:
        return sum(len(i.wire) for i in self._items)

    def split(self, max_items: int) -> list[Self]:
        return [
            type(self)(self.signal, self._items[i : i + max_items]) for i in range(0, len(self), max_items)
        ]

    def dead_letter_records(self) -> list[Any]:
        return [{"record": i.record, "wire": i.wire.decode()} for i in self._items]


class RequestExporter(Exporter):
    """Encodes once per batch; each attempt follows the script ("ok", "half", "all", "permanent")."""

    type_name = "request-scripted"

    def __init__(self, ctx: ComponentContext, script: list[str]) -> None:
        super().__init__(ExporterConfig(), ctx)
        self.script = script
        self.encoded: list[list[int]] = []  # the records of each to_request call
        self.attempts: list[list[Encoded]] = []
        self.delivered: list[int] = []

    async def to_request(self, batch: Batch) -> EncodedRequest:
        self.encoded.append(list(batch.items))
        return EncodedRequest(batch.signal, [Encoded(r) for r in batch.items])

    async def export_request(self, request: ExportRequest) -> int:
        assert isinstance(request, EncodedRequest)
        self.attempts.append(list(request.items))
        step = self.script.pop(0) if self.script else "ok"
        if step == "permanent":
            raise PermanentExportError("never")
        if step == "all":
            raise RetryableExportError("http_503")
        if step == "half":
            landed, rest = request.items[::2], request.items[1::2]
            self.delivered.extend(i.record for i in landed)
            raise RetryableExportError(
                "http_429", remaining=EncodedRequest(request.signal, rest), delivered=len(landed)
            )
        self.delivered.extend(i.record for i in request.items)
        return len(request)


def make(tmp_path: Path, script: list[str], **config: Any) -> tuple[QueueSender, RequestExporter, Telemetry]:
    telemetry = Telemetry()
    ctx = ComponentContext("scripted", telemetry, str(tmp_path), logging.getLogger("test"))
    exporter = RequestExporter(ctx, script)
    exporter.dead_letter = DeadLetter("scripted", tmp_path / "deadletter", telemetry)
    cfg = ExporterConfig.model_validate(config)
    sender = QueueSender(exporter, cfg, MemoryQueue("scripted", cfg.queue, telemetry), telemetry)
    sender.start()
    return sender, exporter, telemetry


async def test_the_sender_makes_the_request_once_splits_it_and_retries_what_is_left(tmp_path: Path) -> None:
    sender, exporter, t = make(
        tmp_path, ["half", "all", "ok"], retry=FAST_RETRY, batch={"flush_interval": 0, "max_records": 6}
    )
    await sender.queue.put(Batch(Signal.LOGS, list(range(8)), 80))  # more than max_records: split
    await wait_until(lambda: sorted(exporter.delivered) == list(range(8)), timeout=5)
    assert exporter.encoded == [list(range(8))]  # converted once, before the first attempt
    first, retried, again, second_piece = exporter.attempts
    assert [i.record for i in first] == [0, 1, 2, 3, 4, 5]
    assert [i.record for i in second_piece] == [6, 7]
    # The retries carry the very items the first attempt had (no conversion in between).
    assert retried == first[1::2] and again == retried
    assert all(a is b for a, b in zip(retried, first[1::2], strict=True))
    assert sample(t, "burnline_records_exported_total", "scripted") == 8
    assert sample(t, "burnline_export_retries_total", "scripted", reason="http_429") == 1
    assert sample(t, "burnline_export_retries_total", "scripted", reason="http_503") == 1
    assert await sender.drain(1) == 0


async def test_the_sender_dead_letters_what_the_request_says(tmp_path: Path) -> None:
    sender, _, t = make(tmp_path, ["half", "permanent"], retry=FAST_RETRY, batch={"flush_interval": 0})
    await sender.queue.put(Batch(Signal.LOGS, [1, 2, 3, 4], 40))
    await wait_until(
        lambda: sample(t, "burnline_records_failed_total", "scripted", reason="permanent") == 2, 5
    )
    letters = dead_letters(tmp_path, "scripted")
    assert [d["record"] for d in letters] == [{"record": 2, "wire": "<2>"}, {"record": 4, "wire": "<4>"}]
    assert sample(t, "burnline_records_exported_total", "scripted") == 2
    await sender.drain(1)


async def test_retries_exhausted_dead_letter_the_remaining_request(tmp_path: Path) -> None:
    sender, exporter, t = make(
        tmp_path,
        ["half"] + ["all"] * 100,
        batch={"flush_interval": 0},
        retry={**FAST_RETRY, "max_elapsed_time": 0.1},
    )
    await sender.queue.put(Batch(Signal.LOGS, [1, 2, 3, 4], 40))
    await wait_until(
        lambda: sample(t, "burnline_records_failed_total", "scripted", reason="retries_exhausted") == 2, 5
    )
    assert [d["record"]["record"] for d in dead_letters(tmp_path, "scripted")] == [2, 4]
    assert exporter.delivered == [1, 3]
    await sender.drain(1)


async def test_a_batch_exporter_gets_its_remaining_batch_wrapped(tmp_path: Path) -> None:
    class Halving(Exporter):
        type_name = "halving"

        def __init__(self, ctx: ComponentContext) -> None:
            super().__init__(ExporterConfig(), ctx)
            self.calls: list[list[int]] = []

        async def export(self, batch: Batch) -> int:
            self.calls.append(list(batch.items))
            if len(batch) > 1:
                rest = batch.items[1:]
                raise RetryableExportError("busy", remaining=Batch(batch.signal, rest, 0), delivered=1)
            return 1

    ctx = ComponentContext("halving", Telemetry(), str(tmp_path), logging.getLogger("test"))
    exporter = Halving(ctx)
    request = await exporter.to_request(Batch(Signal.LOGS, [1, 2, 3], 30))
    assert isinstance(request, BatchRequest)
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export_request(request)
    assert isinstance(caught.value.remaining, BatchRequest)
    assert caught.value.remaining.items == [2, 3]


async def test_an_exporter_without_export_says_so(tmp_path: Path) -> None:
    ctx = ComponentContext("nothing", Telemetry(), str(tmp_path), logging.getLogger("test"))
    with pytest.raises(NotImplementedError):
        await Exporter(ExporterConfig(), ctx).export(Batch(Signal.LOGS, [1], 1))


# ---------------------------------------------------------------------------------------------------
# Elasticsearch: a retry re-sends only the items that failed, as they were encoded


async def test_elasticsearch_retry_resends_only_the_failed_items_without_encoding_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[int] = []
    encode = es_exporter_module.encode_request

    def counting(signal: Signal, records: Sequence[Any], data_stream: Any) -> Any:
        encoded.append(len(records))
        return encode(signal, records, data_stream)

    monkeypatch.setattr(es_exporter_module, "encode_request", counting)
    telemetry = Telemetry()
    async with ElasticsearchDouble() as es:
        exporter = new_es_exporter(
            Target(es.url), tmp_path, telemetry, retry=FAST_RETRY, batch={"flush_interval": 0}
        )
        await exporter.start()
        es.fail_items([201, 429, 201, 503, 400])
        queue = MemoryQueue("elasticsearch", exporter.config.queue, telemetry)
        sender = QueueSender(exporter, exporter.config, queue, telemetry)
        sender.start()
        await queue.put(Batch(Signal.LOGS, logs(5), 500))
        await wait_until(lambda: es.count() == 4, timeout=10)
        assert await sender.drain(5) == 0
        await exporter.stop()
        first, retry = es.bulk_requests
    assert encoded == [5]  # once, before the first attempt
    sent = first.body.splitlines(keepends=True)
    # The retry is the action and source lines of items 1 and 3, byte for byte.
    assert retry.body == b"".join(sent[2:4] + sent[6:8])
    assert sample(telemetry, "burnline_records_exported_total", "elasticsearch") == 4
    assert (
        sample(
            telemetry, "burnline_records_failed_total", "elasticsearch", reason="document_parsing_exception"
        )
        == 1
    )
    assert sample(telemetry, "burnline_export_retries_total", "elasticsearch", reason="item_429") == 1


def test_bulk_request_splits_the_encoded_items() -> None:
    request = BulkRequest(Signal.LOGS, [])
    assert request.split(3) == [request] and request.items_count == 0


# ---------------------------------------------------------------------------------------------------
# OTLP: a retry resends the same bytes


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_otlp_retry_sends_the_same_bytes_without_encoding_again(
    protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encodes: list[int] = []
    encoder = otlp_exporter_module._ENCODERS[Signal.TRACES]

    def counting(items: Sequence[Any], rejected: list[tuple[Any, str]]) -> Any:
        encodes.append(len(items))
        return encoder(items, rejected)

    monkeypatch.setitem(otlp_exporter_module._ENCODERS, Signal.TRACES, counting)
    telemetry = Telemetry()
    async with OTLPEndpointDouble() as double:
        exporter = new_otlp_exporter(
            tmp_path,
            telemetry,
            **endpoint_settings(double, protocol),
            retry=FAST_RETRY,
            batch={"flush_interval": 0},
        )
        await exporter.start()
        bodies: list[bytes] = []
        send: Callable[[Signal, bytes], Any] = exporter._transport.send

        async def recording(signal: Signal, body: bytes) -> Any:
            bodies.append(body)
            return await send(signal, body)

        monkeypatch.setattr(exporter._transport, "send", recording)
        double.fail_next()  # gRPC UNAVAILABLE, HTTP 503
        queue = MemoryQueue("otlp", exporter.config.queue, telemetry)
        sender = QueueSender(exporter, exporter.config, queue, telemetry)
        sender.start()
        await queue.put(Batch(Signal.TRACES, spans(3), 300))
        await wait_until(
            lambda: sample(telemetry, "burnline_records_exported_total", "otlp", "traces") == 3, 10
        )
        assert await sender.drain(5) == 0
        await exporter.stop()
    assert encodes == [3]
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert (
        sum(
            sample(telemetry, "burnline_export_retries_total", "otlp", "traces", reason=r)
            for r in (
                "grpc_unavailable",
                "http_503",
            )
        )
        == 1
    )


def test_otlp_request_groups_whole_payloads_and_cuts_only_what_is_too_big() -> None:
    a, b, c = Payload([1, 2], b"ab", 2), Payload([3, 4], b"cd", 2), Payload([5, 6, 7, 8, 9], b"efghi", 5)
    request = OTLPRequest(Signal.TRACES, [a, b, c])
    assert (request.items, request.items_count, request.size_bytes) == ([1, 2, 3, 4, 5, 6, 7, 8, 9], 9, 9)
    first, second, third = request.split(4)
    assert first.parts == [a, b]  # whole payloads keep their bytes
    assert [p.items for p in second.parts] == [[5, 6, 7, 8]] and second.parts[0].body is None
    assert [p.items for p in third.parts] == [[9]]
    assert request.split(9) == [request]
