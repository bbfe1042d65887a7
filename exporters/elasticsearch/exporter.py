"""The Elasticsearch exporter: log records and spans as ECS documents, bulk-created into data streams.

Each log record becomes one ``create`` operation of a ``_bulk`` request into the data stream
``logs-<dataset>-<namespace>``, each span one into ``traces-<dataset>-<namespace>`` (see
exporters/ecs.py for the documents and the names), with a deterministic ``_id``: a hash of a log
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
import email.utils
import functools
import gzip
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, cast
from urllib.parse import urlsplit

import orjson
from elastic_transport import (
    AiohttpHttpNode,
    ConnectionError,
    ConnectionTimeout,
    HttpHeaders,
    NodeConfig,
    SerializationError,
    TlsError,
    TransportError,
)
from elastic_transport._node import NodeApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, AsyncElasticsearch, UnsupportedProductError
from elasticsearch._version import __versionstr__
from elasticsearch.serializer import OrjsonSerializer
from pydantic import Field, field_validator, model_validator

from collector.config.types import ClientTLS, Duration
from collector.core.component import (
    ComponentConfig,
    ComponentContext,
    Exporter,
    RetryableExportError,
    register,
)
from collector.core.model import Batch, LogRecord, Signal, Span
from collector.exporterhelper.sender import ExporterConfig
from exporters.elasticsearch import ecs

TEMPLATE_FILE = Path(__file__).with_name("index_template.json")
TRACES_TEMPLATE_FILE = Path(__file__).with_name("traces_index_template.json")

# Only what classifying the items needs: the answer for 10 000 items stays small.
BULK_FILTER_PATH = (
    "errors,items.*._id,items.*.status,items.*.error.type,items.*.error.reason,"
    "items.*.error.caused_by.type,items.*.error.caused_by.reason"
)
CLIENT_MAJOR = int(__versionstr__.split(".")[0])
# Probes at start must not hold the service's start-up for a full request timeout.
PROBE_TIMEOUT = 5.0


class DataStreamConfig(ComponentConfig):
    # Log records go to logs-<dataset>-<namespace>.
    dataset: str = ecs.DEFAULT_DATASET
    # Spans go to traces-<traces_dataset>-<namespace>.
    traces_dataset: str = ecs.DEFAULT_DATASET
    namespace: str = ecs.DEFAULT_NAMESPACE
    # Route by the data_stream.dataset / data_stream.namespace attributes of a record or span (or of
    # its resource) when present, sanitized as Elasticsearch's reroute processor does.
    dynamic: bool = True

    @field_validator("dataset", "traces_dataset")
    @classmethod
    def _valid_dataset(cls, value: str) -> str:
        if not value or ecs.sanitize_dataset(value) != value:
            raise ValueError(
                f"{value!r} is not a valid data stream dataset: use lower case, at most 100 bytes and none "
                f'of \\ / * ? " < > | , # : - or spaces (e.g. {ecs.sanitize_dataset(value) or "generic"!r})'
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        if not value or ecs.sanitize_namespace(value) != value:
            raise ValueError(
                f"{value!r} is not a valid data stream namespace: use lower case, at most 100 bytes and "
                f'none of \\ / * ? " < > | , # : or spaces '
                f"(e.g. {ecs.sanitize_namespace(value) or 'default'!r})"
            )
        return value


class TemplateConfig(ComponentConfig):
    # Install (overwrite) composable index templates: @timestamp as date_nanos and the fields this
    # exporter writes typed as ECS says, on top of Elasticsearch's own logs@ / traces@ components.
    # The logs template goes in at start, the traces template before the first span is sent.
    install: bool = False
    name: str = Field(default="burnline-logs", min_length=1)
    index_patterns: list[str] = Field(default_factory=lambda: ["logs-*-*"], min_length=1)
    traces_name: str = Field(default="burnline-traces", min_length=1)
    traces_index_patterns: list[str] = Field(default_factory=lambda: ["traces-*-*"], min_length=1)
    # Above Elasticsearch's built-in "logs" and "traces" templates (100), below Elastic integrations'
    # (200 and up), which must keep winning for their own datasets.
    priority: int = Field(default=150, ge=0)

    @model_validator(mode="after")
    def _distinct(self) -> TemplateConfig:
        if self.name == self.traces_name:
            raise ValueError(f"name and traces_name are both {self.name!r}: each template needs its own")
        return self


class ElasticsearchConfig(ExporterConfig):
    endpoints: list[str] = Field(min_length=1)
    # An encoded API key (as Kibana shows it) or "id:api_key".
    api_key: str | None = None
    user: str | None = None
    password: str | None = None
    tls: ClientTLS | None = None
    compression: Literal["gzip", "none"] = "gzip"
    # Level 1 already shrinks log NDJSON several times at a fraction of level 9's CPU.
    compression_level: int = Field(default=1, ge=1, le=9)
    request_timeout: Duration = 30.0
    data_stream: DataStreamConfig = DataStreamConfig()
    # An ingest pipeline every document goes through (the data stream's default pipeline still
    # applies when this is unset).
    pipeline: str | None = None
    template: TemplateConfig = TemplateConfig()

    @field_validator("endpoints")
    @classmethod
    def _valid_endpoints(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"{value!r} is not an Elasticsearch URL (e.g. https://es.example:9200)")
            if url.username or url.password:
                raise ValueError(f"{value!r}: put credentials in api_key or user/password, not in the URL")
            if url.query or url.fragment:
                raise ValueError(f"{value!r}: an endpoint URL takes no query or fragment")
            out.append(value.rstrip("/"))
        return out

    @field_validator("request_timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("request_timeout must be more than 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ElasticsearchConfig:
        if self.api_key is not None and (self.user is not None or self.password is not None):
            raise ValueError("set either api_key or user and password, not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty")
        if self.tls is not None:
            if any(not e.startswith("https://") for e in self.endpoints):
                raise ValueError("tls is set but an endpoint is not https://")
            if self.tls.server_name:
                raise ValueError("tls.server_name is not supported by the elasticsearch exporter")
        return self


# ---------------------------------------------------------------------------------------------------
# Transport


_COMPAT = re.compile(r"compatible-with=\d+")


class _Node(AiohttpHttpNode):
    """The client's aiohttp node, compressing off the event loop and speaking the cluster's version.

    The stock node gzips bodies at level 9 on the event loop: a 5 MiB bulk would stall every
    receiver of the process for a few hundred milliseconds. Here the compression runs in a worker
    thread (zlib releases the GIL) at the configured level. The 9.x client asks for the v9 REST API
    (``compatible-with=9``), which an 8.x cluster refuses; ``compat_major`` rewrites it.
    Each exporter gets its own subclass, so these class settings are per exporter.
    """

    gzip_level: ClassVar[int | None] = None
    compat_major: ClassVar[int | None] = None

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        if self.gzip_level is not None:
            self.headers["accept-encoding"] = "gzip"

    async def perform_request(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: DefaultType | float | None = DEFAULT,
    ) -> NodeApiResponse:
        compress = bool(body) and self.gzip_level is not None
        if headers is not None and (compress or self.compat_major is not None):
            headers = headers.copy()
            if self.compat_major is not None:
                for name in ("accept", "content-type"):
                    if name in headers:
                        headers[name] = _COMPAT.sub(f"compatible-with={self.compat_major}", headers[name])
        if compress and body is not None and self.gzip_level is not None:
            body = await asyncio.to_thread(gzip.compress, body, self.gzip_level)
            headers = headers if headers is not None else HttpHeaders()
            headers["content-encoding"] = "gzip"
        return await super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )


# ---------------------------------------------------------------------------------------------------
# Encoding


@dataclass(slots=True, eq=False)
class BulkItem:
    """A record ready for ``_bulk``: its action and source lines. Retries resend these bytes, so a
    record keeps its ``_id`` (and its data stream) however often it is retried."""

    record: Any
    index: str
    doc_id: str
    action: bytes
    source: bytes


@functools.lru_cache(maxsize=1024)
def _action_prefix(index: str) -> bytes:
    return b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":"'


class _Encoding:
    """What encoding one batch shares: the time, and each resource's fields computed once."""

    def __init__(self) -> None:
        self.now = time.time_ns()
        self._resources: dict[int, tuple[Any, ecs.AttributeFields]] = {}

    def resource_fields(self, resource: Any) -> ecs.AttributeFields:
        held = self._resources.get(id(resource))
        if held is None or held[0] is not resource:
            held = self._resources[id(resource)] = (resource, ecs.attribute_fields(resource))
        return held[1]


def _source(document: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(ecs.utf8_safe(document), option=orjson.OPT_APPEND_NEWLINE)


def _bulk_item(record: Any, index: str, doc_id: str, source: bytes) -> BulkItem:
    return BulkItem(record, index, doc_id, _action_prefix(index) + doc_id.encode() + b'"}}\n', source)


# What a record that cannot be encoded raises: it is dead-lettered, the rest of the batch goes on.
_ENCODE_ERRORS = (TypeError, ValueError, RecursionError, orjson.JSONEncodeError)


def encode_logs(
    items: Sequence[Any], data_stream: DataStreamConfig
) -> tuple[list[BulkItem], list[tuple[Any, str]]]:
    """Records -> bulk items (items already encoded pass through), and the records that cannot be
    encoded with the reason. Runs in a worker thread: it touches nothing shared."""
    encoding = _Encoding()
    assign_id = ecs.DocumentIds()
    out: list[BulkItem] = []
    failed: list[tuple[Any, str]] = []
    default_dataset, default_namespace = data_stream.dataset, data_stream.namespace
    for record in items:
        if isinstance(record, BulkItem):
            out.append(record)
            continue
        try:
            if not isinstance(record, LogRecord):
                raise TypeError(f"expected a LogRecord, got {type(record).__name__}")
            if data_stream.dynamic:
                dataset, namespace = ecs.route(
                    record.attributes, record.resource, default_dataset, default_namespace
                )
            else:
                dataset, namespace = default_dataset, default_namespace
            index = ecs.data_stream_name(ecs.LOGS, dataset, namespace)
            doc_id = assign_id(record)
            document = ecs.log_document(
                record, dataset, namespace, encoding.now, encoding.resource_fields(record.resource)
            )
            source = _source(document)
        except _ENCODE_ERRORS as exc:
            failed.append((record, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(_bulk_item(record, index, doc_id, source))
    return out, failed


def encode_spans(
    items: Sequence[Any], data_stream: DataStreamConfig
) -> tuple[list[BulkItem], list[tuple[Any, str]]]:
    """Spans -> bulk items into ``traces-<dataset>-<namespace>`` (items already encoded pass
    through), and the spans that cannot be encoded (an invalid trace or span id, ...) with the reason.
    Runs in a worker thread: it touches nothing shared."""
    encoding = _Encoding()
    out: list[BulkItem] = []
    failed: list[tuple[Any, str]] = []
    default_dataset, default_namespace = data_stream.traces_dataset, data_stream.namespace
    for span in items:
        if isinstance(span, BulkItem):
            out.append(span)
            continue
        try:
            if not isinstance(span, Span):
                raise TypeError(f"expected a Span, got {type(span).__name__}")
            doc_id = ecs.span_document_id(span)
            if data_stream.dynamic:
                dataset, namespace = ecs.route(
                    span.attributes, span.resource, default_dataset, default_namespace
                )
            else:
                dataset, namespace = default_dataset, default_namespace
            index = ecs.data_stream_name(ecs.TRACES, dataset, namespace)
            document = ecs.span_document(
                span, dataset, namespace, encoding.now, encoding.resource_fields(span.resource)
            )
            source = _source(document)
        except _ENCODE_ERRORS as exc:
            failed.append((span, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(_bulk_item(span, index, doc_id, source))
    return out, failed


# One encoder per signal; each routes into its own data stream type.
_ENCODERS: dict[
    Signal, Callable[[Sequence[Any], DataStreamConfig], tuple[list[BulkItem], list[tuple[Any, str]]]]
] = {
    Signal.LOGS: encode_logs,
    Signal.TRACES: encode_spans,
}


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


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), None when absent or bad."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_of(body: Any) -> tuple[str, str]:
    """(type, reason) of an Elasticsearch error body; ("", text) for anything else."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("type", "")), _reason(error)
        if isinstance(error, str):
            return "", error
    return "", str(body)[:500]


def _reason(error: dict[str, Any]) -> str:
    reason = str(error.get("reason", ""))
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        reason = f"{reason} (caused by {cause.get('type', '')}: {cause['reason']})"
    return reason


def _supported_major(exc: ApiError, client_major: int) -> int:
    """The REST API major an older cluster names in its media-type refusal, else the one before ours."""
    _, reason = _error_of(exc.body)
    match = re.search(r"must be either version (\d+)", reason)
    return int(match.group(1)) if match else client_major - 1


def _is_media_type_error(exc: ApiError) -> bool:
    return exc.meta.status == 400 and _error_of(exc.body)[0] == "media_type_header_exception"


_TEMPLATE_FILES = {Signal.LOGS: TEMPLATE_FILE, Signal.TRACES: TRACES_TEMPLATE_FILE}


@functools.lru_cache(maxsize=len(_TEMPLATE_FILES))
def _template_file(signal: Signal) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(_TEMPLATE_FILES[signal].read_bytes())
    return loaded


# ---------------------------------------------------------------------------------------------------
# The exporter


@register
class ElasticsearchExporter(Exporter):
    type_name = "elasticsearch"
    config_model = ElasticsearchConfig
    signals = frozenset(_ENCODERS)

    config: ElasticsearchConfig

    def __init__(self, config: ElasticsearchConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self._client: AsyncElasticsearch | None = None
        self._node_class: type[_Node] = cast(
            "type[_Node]",
            type(
                "ElasticsearchNode",
                (_Node,),
                {"gzip_level": config.compression_level if config.compression == "gzip" else None},
            ),
        )
        self._probed = False
        self._ready_lock = asyncio.Lock()
        # Signals whose index template is still to be installed (each before its first bulk request).
        self._templates_pending: set[Signal] = set(self.signals) if config.template.install else set()

    # -- lifecycle ----------------------------------------------------------------------------------

    def _make_client(self) -> AsyncElasticsearch:
        c = self.config
        kwargs: dict[str, Any] = {
            "hosts": list(c.endpoints),
            "node_class": self._node_class,
            "request_timeout": c.request_timeout,
            # Failover to another endpoint on connection errors only; HTTP statuses come back to
            # export(), whose sender owns backoff, Retry-After and the retry metrics.
            "max_retries": len(c.endpoints) - 1,
            "retry_on_status": (),
            "retry_on_timeout": False,
            "connections_per_node": c.concurrency + 1,
            "http_compress": False,  # the node compresses, off the event loop
            "serializer": OrjsonSerializer(),
        }
        if c.api_key is not None:
            key_id, sep, key = c.api_key.partition(":")
            kwargs["api_key"] = (key_id, key) if sep else c.api_key
        elif c.user is not None and c.password is not None:
            kwargs["basic_auth"] = (c.user, c.password)
        if any(e.startswith("https://") for e in c.endpoints):
            kwargs["ssl_context"] = c.tls.context() if c.tls is not None else ssl.create_default_context()
        return AsyncElasticsearch(**kwargs)

    async def start(self) -> None:
        self._client = self._make_client()
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
            if _is_media_type_error(exc) and self._node_class.compat_major is None:
                self._use_api_version(_supported_major(exc, CLIENT_MAJOR))
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
        body = dict(_template_file(signal))
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

    async def export(self, batch: Batch) -> int:
        if not batch.items:
            return 0
        # Encoded first, so that from the first attempt on a record keeps its _id and its bytes.
        if all(isinstance(item, BulkItem) for item in batch.items):
            items, failed = cast(list[BulkItem], batch.items), cast(list[tuple[Any, str]], [])
        else:
            encode = _ENCODERS[batch.signal]
            items, failed = await asyncio.to_thread(encode, batch.items, self.config.data_stream)
        outcome = _Outcome()
        if failed:
            self._dead_letter_unencodable(batch.signal, failed)
            outcome.rejected += len(failed)
        if items and not self._ready_for(batch.signal):
            try:
                await self._get_ready(min(PROBE_TIMEOUT, self.config.request_timeout), batch.signal)
            except _Unavailable:
                outcome.again(items, "connection")
                items = []
        if items:
            await self._bulk(batch.signal, items, outcome)
        if outcome.duplicates:
            self.log.info(
                "%d record(s) were already in Elasticsearch (an earlier attempt landed)", outcome.duplicates
            )
        if outcome.retry:
            raise RetryableExportError(
                outcome.reasons.most_common(1)[0][0],
                remaining=Batch(
                    batch.signal, outcome.retry, sum(len(i.action) + len(i.source) for i in outcome.retry)
                ),
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
        self._classify_items(signal, items, response.body, _retry_after(response.meta.headers), outcome)

    async def _request_failed(
        self, signal: Signal, items: list[BulkItem], exc: ApiError, outcome: _Outcome
    ) -> None:
        status = exc.meta.status
        headers = exc.meta.headers
        error_type, reason = _error_of(exc.body)
        if status in (408, 429) or status >= 500:
            outcome.again(items, f"http_{status}", _retry_after(headers))
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
                self._use_api_version(_supported_major(exc, CLIENT_MAJOR))
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
            outcome.again(items, f"http_{status}", _retry_after(headers))

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
                reason = _reason(error) if isinstance(error, dict) else str(error or "")
                rejected.setdefault(error_type, []).append((item, reason))
        for error_type, entries in rejected.items():
            self._dead_letter(signal, [i for i, _ in entries], error_type, [r for _, r in entries])
            outcome.rejected += len(entries)

    # -- dead letters -------------------------------------------------------------------------------

    def _dead_letter(
        self, signal: Signal, items: list[BulkItem], error_type: str, reasons: list[str]
    ) -> None:
        views = [
            self._item_view(item, error_type, reason) for item, reason in zip(items, reasons, strict=True)
        ]
        detail = reasons[0] if len(set(reasons)) == 1 else f"{reasons[0]} (and {len(items) - 1} more)"
        self.dead_letter.write(signal, views, error_type, detail)

    def _dead_letter_unencodable(self, signal: Signal, failed: list[tuple[Any, str]]) -> None:
        self.dead_letter.write(
            signal,
            [{"error": {"type": "encode_error", "reason": r}, "record": rec} for rec, r in failed],
            "encode_error",
            failed[0][1],
        )

    @staticmethod
    def _item_view(item: BulkItem, error_type: str, reason: str) -> dict[str, Any]:
        return {
            "index": item.index,
            "id": item.doc_id,
            "error": {"type": error_type, "reason": reason},
            "document": orjson.loads(item.source),
            "record": item.record,
        }

    def dead_letter_view(self, item: Any) -> Any:
        """Records the sender gives up on (retries exhausted) keep their document and ``_id``."""
        if isinstance(item, BulkItem):
            return {
                "index": item.index,
                "id": item.doc_id,
                "document": orjson.loads(item.source),
                "record": item.record,
            }
        return item
