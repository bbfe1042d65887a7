"""The ``otlp`` exporter: traces, logs and metrics to any OTLP endpoint, over gRPC or HTTP/protobuf.

Jaeger (1.35 and later) ingests OTLP natively on 4317 (gRPC) and 4318 (HTTP), so this is burnline's
way to Jaeger as well as to an OpenTelemetry Collector, Tempo, or a vendor's OTLP intake. Records are
encoded by exporters/otlp/encode.py, in a worker thread, once per batch (exporters/otlp/request.py).
A batch whose records are still those of the OTLP requests they were received in (``Batch.wire``: no
processor that may change records ran, and none was rejected) is sent as those requests,
concatenated, without encoding it again; its durable queue stores it as those requests too::

    exporters:
      otlp/jaeger: {endpoint: jaeger:4317, insecure: true}          # plaintext gRPC, Jaeger's default
      otlp/vendor:
        protocol: http/protobuf
        endpoint: https://otlp.vendor.example        # + /v1/traces, /v1/logs, /v1/metrics
        headers: {authorization: "Bearer ${OTLP_TOKEN}"}

Transports (``protocol``):

* ``grpc`` (default): ``endpoint`` is ``host:port`` (TLS unless ``insecure: true``), or
  ``http://host:port`` / ``https://host:port``. One grpc.aio channel, the opentelemetry-proto
  ``*_pb2_grpc`` stubs, gzip per call, ``headers`` as metadata. The channel reconnects by itself with
  a backoff bounded by the exporter's ``retry`` settings, so an endpoint that comes back is used
  again within ``retry.max_interval``.
* ``http/protobuf``: ``endpoint`` is a base URL and ``/v1/traces``, ``/v1/logs``, ``/v1/metrics``
  are appended (after any path it has); ``traces_endpoint``, ``logs_endpoint``, ``metrics_endpoint``
  give a signal's full URL instead. aiohttp, kept-alive connections, bodies gzipped off the event
  loop. The URL scheme decides TLS.

What an answer does, as the OTLP specification says (protocol/otlp.md, "Failures"):

* Success: the batch is delivered. A ``partial_success`` with ``rejected_<items>`` > 0 means the
  endpoint dropped that many for good; OTLP forbids resending the request, and the answer does not
  say which records were dropped, so none can be written to the dead-letter file. They are counted
  exactly, as ``burnline_records_failed_total{reason="partial_success"}``, and logged with the
  endpoint's message; the rest counts as exported. A partial success with 0 rejected carries a
  warning from the endpoint, which is logged.
* Retried after the sender's backoff (RetryableExportError): gRPC UNAVAILABLE, CANCELLED,
  DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED when the status
  carries a ``google.rpc.RetryInfo`` (the server says it can recover); HTTP 429, 502, 503, 504; no
  connection, a timeout, a dropped connection. ``RetryInfo.retry_delay`` and ``Retry-After`` (seconds
  or an HTTP date) are the retry hint.
* Too large (HTTP 413; gRPC RESOURCE_EXHAUSTED without RetryInfo for a message over the server's
  limit, 4 MiB by default in gRPC servers): the request is split in halves until it fits, and from
  then on the exporter sends at most that many records per request (logged once: lower
  ``batch.max_bytes`` to avoid the extra round trips). A single record too large is refused for good.
* Refused for good, everything else (HTTP 400, 401, 403, 404, other 4xx and 5xx; gRPC
  INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED (Jaeger answers it for logs
  and metrics: it takes traces only), RESOURCE_EXHAUSTED without RetryInfo, INTERNAL, UNKNOWN, ...):
  PermanentExportError, so the sender writes the batch to the dead-letter file; the endpoint's
  message is logged and names the reason. (When only part of a batch was refused, after a split,
  the exporter dead-letters that part itself, with the status as the reason.)
* A record that cannot be encoded (a trace id that is not 32 hex digits, a negative time) is
  dead-lettered alone with reason ``encode_error``; the rest of the batch goes on.

``start()`` only creates the channel or session: an endpoint that is down does not stop the service;
records stay queued and retried until it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from collector.core.component import (
    ComponentContext,
    Exporter,
    PermanentExportError,
    RetryableExportError,
    register,
)
from collector.core.model import Batch, Signal
from collector.exporterhelper.request import ExportRequest
from exporters.otlp.answers import Accepted, Failed
from exporters.otlp.config import OTLPExporterConfig
from exporters.otlp.encode import logs_to_proto, metrics_to_proto, spans_to_proto
from exporters.otlp.grpc_client import GrpcTransport
from exporters.otlp.http_client import HttpTransport
from exporters.otlp.request import OTLPRequest, Payload, record_view

# Importers of the exporter module find its config here too.
__all__ = ["OTLPExporter", "OTLPExporterConfig"]

_ITEM_NAMES = {Signal.TRACES: "spans", Signal.LOGS: "log records", Signal.METRICS: "data points"}

_ENCODERS: dict[Signal, Callable[[Sequence[Any], list[tuple[Any, str]]], Message]] = {
    Signal.TRACES: spans_to_proto,
    Signal.LOGS: logs_to_proto,
    Signal.METRICS: metrics_to_proto,
}


@dataclass(slots=True)
class _Outcome:
    """What became of a request's records in one export call."""

    delivered: int = 0
    rejected: int = 0
    retry: list[Payload] = field(default_factory=list)
    reason: str = ""
    retry_after: float | None = None
    refused: list[tuple[list[Any], Failed]] = field(default_factory=list)

    def again(self, parts: Sequence[Payload], failure: Failed | None = None) -> None:
        self.retry.extend(parts)
        if failure is not None:
            self.reason = self.reason or failure.reason
            if failure.retry_after is not None:
                self.retry_after = max(self.retry_after or 0.0, failure.retry_after)


@register
class OTLPExporter(Exporter[OTLPExporterConfig]):
    """Sends batches to an OTLP endpoint (Jaeger, an OpenTelemetry Collector, ...)."""

    type_name = "otlp"
    config_model = OTLPExporterConfig
    signals = frozenset({Signal.TRACES, Signal.LOGS, Signal.METRICS})
    sends_wire = True

    def __init__(self, config: OTLPExporterConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self._transport: GrpcTransport | HttpTransport = (
            GrpcTransport(config) if config.protocol == "grpc" else HttpTransport(config)
        )
        # Records per request once the endpoint said a request was too large (None: no limit).
        self.request_limit: int | None = None
        self._failing: str | None = None  # the reason of the last failed request, to log changes once

    async def start(self) -> None:
        await self._transport.open()
        self.log.info("exporting OTLP to %s", self._transport.describe())

    async def stop(self) -> None:
        await self._transport.close()

    # -- the request ----------------------------------------------------------------------------------

    async def to_request(self, batch: Batch) -> OTLPRequest:
        """The batch encoded once, in requests of at most ``request_limit`` records; records that
        cannot be encoded are dead-lettered here."""
        items = batch.items
        if batch.signal not in self.signals or not items:
            return OTLPRequest(batch.signal, [Payload(list(items), None, batch.size_bytes)] if items else [])
        if batch.wire is not None and (self.request_limit is None or len(items) <= self.request_limit):
            # The request the records were received in, unchanged since: sent as it is.
            body = await self._transport.prepare_wire(batch.wire)
            return OTLPRequest(batch.signal, [Payload(list(items), body, len(body))])
        limit = self.request_limit or len(items)
        chunks = [items[start : start + limit] for start in range(0, len(items), limit)]
        parts, unencodable = await asyncio.to_thread(self._encode_all, batch.signal, chunks)
        if unencodable:
            self._dead_letter_unencodable(batch.signal, unencodable)
        return OTLPRequest(batch.signal, parts)

    def _encode_all(
        self, signal: Signal, chunks: list[list[Any]]
    ) -> tuple[list[Payload], list[tuple[Any, str]]]:
        parts: list[Payload] = []
        unencodable: list[tuple[Any, str]] = []
        for chunk in chunks:
            part, rejected = self._encode(signal, chunk)
            unencodable.extend(rejected)
            if part.items:
                parts.append(part)
        return parts, unencodable

    def _encode(self, signal: Signal, items: Sequence[Any]) -> tuple[Payload, list[tuple[Any, str]]]:
        """(the records that can be encoded, with the bytes ready for the transport; the records
        that cannot be encoded). Runs in a worker thread."""
        rejected: list[tuple[Any, str]] = []
        request = _ENCODERS[signal](items, rejected)
        kept = list(items)
        if rejected:
            bad = {id(item) for item, _ in rejected}
            kept = [item for item in items if id(item) not in bad]
        body = self._transport.prepare(request)
        return Payload(kept, body, len(body)), rejected

    # -- export -------------------------------------------------------------------------------------

    async def export(self, batch: Batch | OTLPRequest) -> int:
        """Exports a batch, or a request this exporter made (what a RetryableExportError left)."""
        request = batch if isinstance(batch, OTLPRequest) else await self.to_request(batch)
        return await self.export_request(request)

    async def export_request(self, request: ExportRequest) -> int:
        if request.signal not in self.signals:
            raise PermanentExportError(f"the otlp exporter does not send {request.signal.value}")
        if not isinstance(request, OTLPRequest):
            raise TypeError(f"the otlp exporter sends OTLP requests, not {type(request).__name__}")
        count = request.items_count
        if not count:
            return 0
        outcome = _Outcome()
        for whole in request.parts:
            # A payload encoded before the endpoint said requests were too large goes in pieces.
            for part in whole.cut(self.request_limit) if self.request_limit else [whole]:
                if outcome.retry:  # an earlier request failed for now: the rest waits for the retry too
                    outcome.again([part])
                    continue
                await self._send(request.signal, part, outcome)
        if outcome.refused:
            first_items, first_failure = outcome.refused[0]
            if len(first_items) == count and not outcome.rejected:
                # The whole request was refused at once: the sender dead-letters it.
                raise PermanentExportError(f"{first_failure.reason}: {first_failure.detail}")
            for refused_items, failure in outcome.refused:
                self.dead_letter.write(
                    request.signal,
                    [record_view(i) for i in refused_items],
                    failure.reason,
                    failure.detail,
                )
                outcome.rejected += len(refused_items)
        if outcome.retry:
            raise RetryableExportError(
                outcome.reason or "retry",
                remaining=OTLPRequest(request.signal, outcome.retry),
                retry_after=outcome.retry_after,
                delivered=outcome.delivered,
                rejected=outcome.rejected,
            )
        return outcome.delivered

    async def _send(self, signal: Signal, part: Payload, outcome: _Outcome) -> None:
        if part.body is None:  # a piece of a payload cut to a limit: encoded now, kept for retries
            encoded, unencodable = await asyncio.to_thread(self._encode, signal, part.items)
            if unencodable:
                self._dead_letter_unencodable(signal, unencodable)
                outcome.rejected += len(unencodable)
            part.items, part.body, part.size = encoded.items, encoded.body, encoded.size
        if not part.items or part.body is None:
            return
        try:
            accepted = await self._transport.send(signal, part.body)
        except Failed as failure:
            await self._failed(signal, part, failure, outcome)
            return
        if self._failing is not None:
            self.log.info("OTLP endpoint %s takes requests again", self._transport.describe(signal))
            self._failing = None
        self._accepted(signal, len(part.items), accepted, outcome)

    async def _failed(self, signal: Signal, part: Payload, failure: Failed, outcome: _Outcome) -> None:
        items = part.items
        if failure.too_large and len(items) > 1:
            half = len(items) // 2
            if self.request_limit is None or half < self.request_limit:
                self.request_limit = half
                self.log.warning(
                    "a request of %d %s is too large for %s (%s); sending at most %d per request from now "
                    "on (lower batch.max_bytes or batch.max_records to avoid this)",
                    len(items),
                    _ITEM_NAMES[signal],
                    self._transport.describe(signal),
                    failure.detail,
                    half,
                )
            per_item = part.size // len(items)
            first, second = Payload(items[:half], None, per_item * half), Payload(items[half:], None, 0)
            second.size = per_item * len(second.items)
            await self._send(signal, first, outcome)
            if outcome.retry:
                outcome.again([second])
            else:
                await self._send(signal, second, outcome)
            return
        if failure.retryable:
            if self._failing != failure.reason:
                self._failing = failure.reason
                self.log.warning(
                    "OTLP endpoint %s did not take %d %s: %s; they stay queued and are retried",
                    self._transport.describe(signal),
                    len(items),
                    _ITEM_NAMES[signal],
                    failure,
                )
            outcome.again([part], failure)
            return
        self.log.error(
            "OTLP endpoint %s refused %d %s for good: %s%s",
            self._transport.describe(signal),
            len(items),
            _ITEM_NAMES[signal],
            failure,
            _hint(signal, failure),
        )
        outcome.refused.append((list(items), failure))

    def _accepted(self, signal: Signal, sent: int, accepted: Accepted, outcome: _Outcome) -> None:
        if accepted.rejected > 0:
            # Which records were dropped, the endpoint does not say: they are counted, not
            # dead-lettered (and OTLP forbids sending the request again).
            dropped = min(accepted.rejected, sent)
            self.ctx.telemetry.failed.labels(self.id, signal.value, "partial_success").inc(dropped)
            self.log.error(
                "OTLP endpoint %s dropped %d of %d %s: %s",
                self._transport.describe(signal),
                dropped,
                sent,
                _ITEM_NAMES[signal],
                accepted.message or "(no message)",
            )
            outcome.delivered += sent - dropped
            outcome.rejected += dropped
            return
        if accepted.message:
            self.log.warning("OTLP endpoint %s: %s", self._transport.describe(signal), accepted.message)
        outcome.delivered += sent

    def dead_letter_view(self, item: Any) -> Any:
        """The record as JSON that cannot fail to encode (records are dead-lettered for odd values)."""
        return record_view(item)

    def _dead_letter_unencodable(self, signal: Signal, failed: list[tuple[Any, str]]) -> None:
        by_reason: dict[str, list[Any]] = {}
        for item, reason in failed:
            by_reason.setdefault(reason, []).append(self.dead_letter_view(item))
        for reason, views in by_reason.items():
            self.dead_letter.write(signal, views, "encode_error", reason)


def _hint(signal: Signal, failure: Failed) -> str:
    if failure.reason in ("grpc_unimplemented", "http_404") and signal != Signal.TRACES:
        return f" (does the endpoint take {signal.value}? Jaeger takes traces only)"
    if failure.reason in ("grpc_unauthenticated", "grpc_permission_denied", "http_401", "http_403"):
        return " (check the credentials in headers)"
    return ""
