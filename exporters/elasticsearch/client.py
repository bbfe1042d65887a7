"""The Elasticsearch client: its aiohttp node (compression off the event loop, the cluster's REST API
version), the settings it is made with, and what its errors and answers say.
"""

from __future__ import annotations

import functools
import re
import ssl
from pathlib import Path
from typing import Any, ClassVar, cast

import orjson
from elastic_transport import AiohttpHttpNode, HttpHeaders, NodeConfig
from elastic_transport._node import NodeApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch._version import __versionstr__
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from collector.core.gzip_body import gzip_body
from collector.core.model import Signal
from collector.core.retry_after import parse_retry_after
from exporters.elasticsearch.config import ElasticsearchConfig

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

_COMPAT = re.compile(r"compatible-with=\d+")


class CompressingNode(AiohttpHttpNode):
    """The client's aiohttp node, compressing at the configured level and speaking the cluster's version.

    The stock node gzips bodies at level 9 on the event loop: a 5 MiB bulk would stall every
    receiver of the process for a few hundred milliseconds. Here bodies are gzipped at the
    configured level, on the loop or in a worker thread as ``gzip_body`` decides (level 1, the
    default, inline up to 8 MiB; collector/core/gzip_body.py). The 9.x client
    asks for the v9 REST API (``compatible-with=9``), which an 8.x cluster refuses; ``compat_major``
    rewrites it. Each exporter gets its own subclass, so these class settings are per exporter.
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
            body = await gzip_body(body, self.gzip_level)
            headers = headers if headers is not None else HttpHeaders()
            headers["content-encoding"] = "gzip"
        return await super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )


def node_class(config: ElasticsearchConfig) -> type[CompressingNode]:
    """A node class of the exporter's own, so that its class settings are per exporter."""
    return cast(
        "type[CompressingNode]",
        type(
            "ElasticsearchNode",
            (CompressingNode,),
            {"gzip_level": config.compression_level if config.compression == "gzip" else None},
        ),
    )


class BulkBodySerializer(NdjsonSerializer):
    """NDJSON for bodies the exporter encoded itself: bytes ending in a newline go out as they are.

    The stock serializer copies such a body into a new buffer line by line (twice the size of a
    ``_bulk`` request, once per request); anything else it still serializes.
    """

    def dumps(self, data: Any) -> bytes:
        if type(data) is bytes and data.endswith(b"\n"):
            return data
        return super().dumps(data)


def make_client(config: ElasticsearchConfig, node: type[CompressingNode]) -> AsyncElasticsearch:
    c = config
    kwargs: dict[str, Any] = {
        "hosts": list(c.endpoints),
        "node_class": node,
        "request_timeout": c.request_timeout,
        # Failover to another endpoint on connection errors only; HTTP statuses come back to
        # export(), whose sender owns backoff, Retry-After and the retry metrics.
        "max_retries": len(c.endpoints) - 1,
        "retry_on_status": (),
        "retry_on_timeout": False,
        "connections_per_node": c.concurrency + 1,
        "http_compress": False,  # the node compresses, off the event loop
        # The client uses each for its compatibility mimetype too (application/vnd.elasticsearch+...).
        "serializers": {
            OrjsonSerializer.mimetype: OrjsonSerializer(),
            NdjsonSerializer.mimetype: BulkBodySerializer(),
        },
    }
    if c.api_key is not None:
        key_id, sep, key = c.api_key.partition(":")
        kwargs["api_key"] = (key_id, key) if sep else c.api_key
    elif c.user is not None and c.password is not None:
        kwargs["basic_auth"] = (c.user, c.password)
    if any(e.startswith("https://") for e in c.endpoints):
        kwargs["ssl_context"] = c.tls.context() if c.tls is not None else ssl.create_default_context()
    return AsyncElasticsearch(**kwargs)


def retry_hint(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), None when absent or bad."""
    return parse_retry_after(headers.get("retry-after") if headers is not None else None)


def error_of(body: Any) -> tuple[str, str]:
    """(type, reason) of an Elasticsearch error body; ("", text) for anything else."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("type", "")), error_reason(error)
        if isinstance(error, str):
            return "", error
    return "", str(body)[:500]


def error_reason(error: dict[str, Any]) -> str:
    reason = str(error.get("reason", ""))
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        reason = f"{reason} (caused by {cause.get('type', '')}: {cause['reason']})"
    return reason


def supported_major(exc: ApiError, client_major: int) -> int:
    """The REST API major an older cluster names in its media-type refusal, else the one before ours."""
    _, reason = error_of(exc.body)
    match = re.search(r"must be either version (\d+)", reason)
    return int(match.group(1)) if match else client_major - 1


def is_media_type_error(exc: ApiError) -> bool:
    return exc.meta.status == 400 and error_of(exc.body)[0] == "media_type_header_exception"


TEMPLATE_FILES = {Signal.LOGS: TEMPLATE_FILE, Signal.TRACES: TRACES_TEMPLATE_FILE}


@functools.lru_cache(maxsize=len(TEMPLATE_FILES))
def template_file(signal: Signal) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(TEMPLATE_FILES[signal].read_bytes())
    return loaded
