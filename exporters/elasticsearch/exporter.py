"""The Elasticsearch exporter: log records and spans as ECS documents, bulk-created into data streams.

Each log record becomes one ``create`` operation of a ``_bulk`` request into the data stream
``logs-<dataset>-<namespace>``, each span one into ``traces-<dataset>-<namespace>`` (see
exporters/elasticsearch/ecs.py for the documents and the names), with a deterministic ``_id``: a hash of a log
record, the trace id and span id of a span. The official async client (aiohttp) sends every request.

Routing: ``data_stream.dataset`` (logs; default ``generic``), ``data_stream.traces_dataset`` (spans;
default ``generic``) and ``data_stream.namespace`` (both) name the data streams; with
``data_stream.dynamic`` a record's or span's own ``data_stream.dataset`` / ``data_stream.namespace``
attributes (or its resource's) win.

What happens to each record of a bulk request:

* item 200/201: delivered. Item 409 (``version_conflict_engine_exception`` on ``create``): the same
  ``_id`` is already there, so an earlier attempt landed (its answer was lost); delivered, not
  duplicated. This is why 5xx may be retried safely, which exporters with random ids cannot do.
* item 429 or 5xx: retried (only those records) after the sender's backoff, honouring Retry-After.
* any other item status (``document_parsing_exception``, ``index_not_found_exception``, a 403 for a
  data stream the credentials may not write, ...): written to the dead-letter file with the error
  type as the reason and Elasticsearch's explanation in the record's entry. A per-item 403 is
  dead-lettered rather than retried because it concerns that record's destination only: retrying it
  forever would wedge a sender worker while the other data streams flow.

What happens when the whole request fails:

* connection refused/reset, TLS failures, timeouts, HTTP 408/429/5xx: every record is retried.
* HTTP 413: the request is split in halves until it fits; a single record too large for the cluster
  is dead-lettered (reason ``request_too_large``).
* HTTP 401/403 (bad or under-privileged credentials), other 4xx, an answer that is not from
  Elasticsearch: logged as an error on every attempt and retried. These are configuration errors that
  an operator fixes; until then the bounded queue fills and receivers see backpressure, so nothing is
  lost and the backlog keeps its order. Dead-lettering would instead move every record of the outage
  to a file that has to be replayed by hand, out of order with what came after.
* HTTP 400 from Elasticsearch itself (the request is malformed): dead-lettered, since sending the
  same bytes again cannot succeed. A 400 ``media_type_header_exception`` is different: the cluster is
  a major version behind the client (8.x) and the exporter switches to its compatibility headers.

Start never fails because Elasticsearch is down: the exporter logs it and, before its first bulk
request, probes the cluster again (version, compatibility headers) and installs the index template
when configured, so no data stream is created before its template exists. With ``template.install``
the logs template goes in at start (or before the first bulk request) and the traces template before
the first span is sent: an exporter that never sees a span leaves the cluster's ``traces-*`` mappings
alone.

A known limit of ``_id`` deduplication: a data stream's ``_id``s are unique per backing index, so if
the stream rolls over between an attempt that landed and its retry, the retry lands again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from elastic_transport import ConnectionError, ConnectionTimeout, SerializationError, TlsError, TransportError
from elasticsearch import ApiError, AsyncElasticsearch, UnsupportedProductError

from collector.core.component import ComponentContext, Exporter, RetryableExportError, register
from collector.core.model import Batch, Signal
from collector.exporterhelper.request import ExportRequest
from exporters.elasticsearch.bulk import ENCODERS, BulkItem, BulkRequest, encode_request, item_view
from exporters.elasticsearch.client import (
    BULK_FILTER_PATH,
    CLIENT_MAJOR,
    PROBE_TIMEOUT,
    error_of,
    error_reason,
    is_media_type_error,
    make_client,
    node_class,
    retry_hint,
    supported_major,
    template_file,
)
from exporters.elasticsearch.config import ElasticsearchConfig

# Importers of the exporter module find its config here too.
__all__ = ["ElasticsearchConfig", "ElasticsearchExporter"]


# A batch of up to this many records is encoded on the event loop, a larger one in a worker thread.
# Encoding is Python holding the GIL, so a thread runs none of it beside the loop; it only adds the
# GIL's hand-offs and a trip through the loop for the result. With the receivers decoding on the loop,
# a sender whose every batch went through a thread fell behind them: the backlog grew, spilled to
# disk and was decoded again (bench/RESULTS.md, "Elasticsearch's sender encodes on the event loop").
# At ~10 µs a record, the default batch (1,000) holds the loop for about 10 ms and this bound for 20;
# a larger batch goes to a thread so that the loop still serves connections while it is encoded.
INLINE_ENCODE_RECORDS = 2000

# ---------------------------------------------------------------------------------------------------
# Outcome of one export call


@dataclass(slots=True)
class _Outcome:
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    retry: list[BulkItem] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    retry_after: float | None = None

    def again(self, items: Sequence[BulkItem], reason: str, retry_after: float | None = None) -> None:
        self.retry.extend(items)
        self.reasons[reason] += len(items)
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)


class _Unavailable(Exception):
    """The cluster could not be reached (or answered 429/5xx) while getting ready."""


# ---------------------------------------------------------------------------------------------------
# The exporter


@register
class ElasticsearchExporter(Exporter[ElasticsearchConfig]):
    type_name = "elasticsearch"
    config_model = ElasticsearchConfig
    signals = frozenset(ENCODERS)

    def __init__(self, config: ElasticsearchConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self._client: AsyncElasticsearch | None = None
        self._node_class = node_class(config)
        self._probed = False
        self._ready_lock = asyncio.Lock()
        # Signals whose index template is still to be installed (each before its first bulk request).
        self._templates_pending: set[Signal] = set(self.signals) if config.template.install else set()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = make_client(self.config, self._node_class)
        try:
            await self._get_ready(PROBE_TIMEOUT, Signal.LOGS)
        except _Unavailable as exc:
            self.log.warning(
                "Elasticsearch (%s) is not reachable at start (%s); records stay queued and are sent once it "
                "answers",
                ", ".join(self.config.endpoints),
                exc,
            )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> AsyncElasticsearch:
        if self._client is None:
            raise RuntimeError(f"exporter {self.id} is not started")
        return self._client

    # -- getting ready: version probe and index template -------------------------------------------

    def _ready_for(self, signal: Signal) -> bool:
        return self._probed and signal not in self._templates_pending

    async def _get_ready(self, timeout: float, signal: Signal) -> None:
        """Probes the cluster once and installs ``signal``'s template once; raises _Unavailable to
        try later."""
        async with self._ready_lock:
            if self._ready_for(signal):
                return
            client = self.client.options(request_timeout=timeout)
            try:
                if not self._probed:
                    await self._probe(client)
                    self._probed = True
                if signal in self._templates_pending:
                    await self._install_template(client, signal)
            except TransportError as exc:
                raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _probe(self, client: AsyncElasticsearch) -> None:
        try:
            info = await client.info()
        except UnsupportedProductError:
            self.log.error(
                "%s does not answer as Elasticsearch; check endpoints", ", ".join(self.config.endpoints)
            )
            return
        except ApiError as exc:
            if is_media_type_error(exc) and self._node_class.compat_major is None:
                self._use_api_version(supported_major(exc, CLIENT_MAJOR))
                info = await client.info()
            elif exc.meta.status == 429 or exc.meta.status >= 500:
                raise _Unavailable(f"cluster info answered HTTP {exc.meta.status}") from exc
            else:
                # A least-privilege ingest key may not read cluster info (403): bulk can still work.
                self.log.warning("could not read Elasticsearch cluster info (%s); continuing", exc)
                return
        version = str(info.body.get("version", {}).get("number", "?"))
        major = int(version.split(".", maxsplit=1)[0]) if version.split(".", maxsplit=1)[0].isdigit() else 0
        self.log.info(
            "connected to Elasticsearch %s (cluster %s)", version, info.body.get("cluster_name", "?")
        )
        if major and major < 8:
            self.log.error("Elasticsearch %s is not supported: use 8.x or later", version)
        elif major and major < CLIENT_MAJOR and self._node_class.compat_major is None:
            self._use_api_version(major)

    def _use_api_version(self, major: int) -> None:
        self._node_class.compat_major = major
        self.log.info("the cluster speaks REST API v%d: sending compatible-with=%d headers", major, major)

    def template_name(self, signal: Signal = Signal.LOGS) -> str:
        t = self.config.template
        return t.traces_name if signal == Signal.TRACES else t.name

    def template_body(self, signal: Signal = Signal.LOGS) -> dict[str, Any]:
        """The composable index template for ``signal`` installed when ``template.install`` is on."""
        t = self.config.template
        body = dict(template_file(signal))
        body["index_patterns"] = list(
            t.traces_index_patterns if signal == Signal.TRACES else t.index_patterns
        )
        body["priority"] = t.priority
        return body

    async def _install_template(self, client: AsyncElasticsearch, signal: Signal) -> None:
        name = self.template_name(signal)
        body = self.template_body(signal)
        try:
            await client.indices.put_index_template(name=name, body=body)
        except ApiError as exc:
            if exc.meta.status == 429 or exc.meta.status >= 500:
                raise _Unavailable(f"index template answered HTTP {exc.meta.status}") from exc
            self.log.error("could not install index template %r (%s); exporting without it", name, exc)
        else:
            self.log.info("installed index template %r for %s", name, ", ".join(body["index_patterns"]))
        self._templates_pending.discard(signal)

    # -- export -------------------------------------------------------------------------------------

    async def to_request(self, batch: Batch) -> BulkRequest:
        """Encodes the records once, so that from the first attempt on a record keeps its _id and
        its bytes; records that cannot be encoded are dead-lettered here."""
        args = (batch.signal, batch.items, self.config.data_stream)
        if len(batch.items) <= INLINE_ENCODE_RECORDS:
            request, failed = encode_request(*args)
        else:
            request, failed = await asyncio.to_thread(encode_request, *args)
        if failed:
            self._dead_letter_unencodable(batch.signal, failed)
        return request

    async def export(self, batch: Batch | BulkRequest) -> int:
        """Exports a batch, or a request this exporter made (what a RetryableExportError left)."""
        request = batch if isinstance(batch, BulkRequest) else await self.to_request(batch)
        return await self.export_request(request)

    async def export_request(self, request: ExportRequest) -> int:
        if not isinstance(request, BulkRequest):
            raise TypeError(f"the elasticsearch exporter sends bulk requests, not {type(request).__name__}")
        items = request.items
        outcome = _Outcome()
        if items and not self._ready_for(request.signal):
            try:
                await self._get_ready(min(PROBE_TIMEOUT, self.config.request_timeout), request.signal)
            except _Unavailable:
                outcome.again(items, "connection")
                items = []
        if items:
            await self._bulk(request.signal, items, outcome)
        if outcome.duplicates:
            self.log.info(
                "%d record(s) were already in Elasticsearch (an earlier attempt landed)", outcome.duplicates
            )
        if outcome.retry:
            raise RetryableExportError(
                outcome.reasons.most_common(1)[0][0],
                remaining=request.subset(outcome.retry),
                retry_after=outcome.retry_after,
                delivered=outcome.delivered,
                rejected=outcome.rejected,
            )
        return outcome.delivered

    async def _bulk(self, signal: Signal, items: list[BulkItem], outcome: _Outcome) -> None:
        body = b"".join([part for item in items for part in (item.action, item.source)])
        try:
            response = await self.client.bulk(
                operations=cast(Any, body), pipeline=self.config.pipeline, filter_path=BULK_FILTER_PATH
            )
        except UnsupportedProductError:
            self.log.error(
                "%s answered, but not as Elasticsearch; check endpoints (will retry)",
                ", ".join(self.config.endpoints),
            )
            outcome.again(items, "not_elasticsearch")
            return
        except ApiError as exc:
            await self._request_failed(signal, items, exc, outcome)
            return
        except ConnectionTimeout:
            outcome.again(items, "timeout")
            return
        except TlsError as exc:
            self.log.error("TLS with Elasticsearch failed: %s (check tls settings; will retry)", exc)
            outcome.again(items, "tls")
            return
        except ConnectionError:
            outcome.again(items, "connection")
            return
        except SerializationError as exc:
            self.log.error("unreadable answer to a bulk request: %s (will retry)", exc)
            outcome.again(items, "bad_response")
            return
        self._classify_items(signal, items, response.body, retry_hint(response.meta.headers), outcome)

    async def _request_failed(
        self, signal: Signal, items: list[BulkItem], exc: ApiError, outcome: _Outcome
    ) -> None:
        status = exc.meta.status
        headers = exc.meta.headers
        error_type, reason = error_of(exc.body)
        if status in (408, 429) or status >= 500:
            outcome.again(items, f"http_{status}", retry_hint(headers))
        elif status == 413:
            if len(items) > 1:
                half = len(items) // 2
                await self._bulk(signal, items[:half], outcome)
                await self._bulk(signal, items[half:], outcome)
            else:
                self._dead_letter(signal, items, "request_too_large", [reason or "HTTP 413"])
                outcome.rejected += len(items)
        elif status == 400 and error_type == "media_type_header_exception":
            if self._node_class.compat_major is None:
                self._use_api_version(supported_major(exc, CLIENT_MAJOR))
            else:
                self.log.error("Elasticsearch refuses the API version headers: %s (will retry)", reason)
            outcome.again(items, "api_version")
        elif status == 400 and headers.get("x-elastic-product") == "Elasticsearch":
            self._dead_letter(signal, items, error_type or "http_400", [reason] * len(items))
            outcome.rejected += len(items)
        else:
            what = (
                "rejected the credentials"
                if status == 401
                else (
                    "denied the bulk request (missing privileges)"
                    if status == 403
                    else f"answered HTTP {status}"
                )
            )
            self.log.error(
                "Elasticsearch %s: %s %s; %d record(s) stay queued and are retried until this is fixed",
                what,
                error_type,
                reason,
                len(items),
            )
            outcome.again(items, f"http_{status}", retry_hint(headers))

    def _classify_items(
        self, signal: Signal, items: list[BulkItem], body: Any, retry_after: float | None, outcome: _Outcome
    ) -> None:
        results = body.get("items") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(items):
            # Resending is safe: whatever landed answers 409 next time.
            self.log.error("bulk answer does not match the request (%d items sent); will retry", len(items))
            outcome.again(items, "bad_response")
            return
        if body.get("errors") is False:
            outcome.delivered += len(items)
            return
        rejected: dict[str, list[tuple[BulkItem, str]]] = {}
        for item, result in zip(items, results, strict=True):
            op = next(iter(result.values()), None) if isinstance(result, dict) else None
            status = op.get("status") if isinstance(op, dict) else None
            if (
                not isinstance(op, dict)
                or not isinstance(status, int)
                or op.get("_id", item.doc_id) != item.doc_id
            ):
                outcome.again([item], "bad_response")
            elif 200 <= status < 300:
                outcome.delivered += 1
            elif status == 409:
                outcome.delivered += 1
                outcome.duplicates += 1
            elif status == 429 or status >= 500:
                outcome.again([item], f"item_{status}", retry_after)
            else:
                error = op.get("error")
                error_type = (
                    str(error.get("type") or f"http_{status}")
                    if isinstance(error, dict)
                    else f"http_{status}"
                )
                reason = error_reason(error) if isinstance(error, dict) else str(error or "")
                rejected.setdefault(error_type, []).append((item, reason))
        for error_type, entries in rejected.items():
            self._dead_letter(signal, [i for i, _ in entries], error_type, [r for _, r in entries])
            outcome.rejected += len(entries)

    # -- dead letters -------------------------------------------------------------------------------

    def _dead_letter(
        self, signal: Signal, items: list[BulkItem], error_type: str, reasons: list[str]
    ) -> None:
        views = [item_view(item, error_type, reason) for item, reason in zip(items, reasons, strict=True)]
        detail = reasons[0] if len(set(reasons)) == 1 else f"{reasons[0]} (and {len(items) - 1} more)"
        self.dead_letter.write(signal, views, error_type, detail)

    def _dead_letter_unencodable(self, signal: Signal, failed: list[tuple[Any, str]]) -> None:
        self.dead_letter.write(
            signal,
            [{"error": {"type": "encode_error", "reason": r}, "record": rec} for rec, r in failed],
            "encode_error",
            failed[0][1],
        )
