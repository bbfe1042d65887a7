"""A test double of an Elasticsearch node: the REST protocol the official client speaks, on loopback.

Not an Elasticsearch: it keeps documents in memory and implements what burnline's exporter and its
tests use, the way a real node answers them:

* ``GET /`` (cluster info), ``POST|PUT /_bulk`` and ``/{index}/_bulk`` (NDJSON, gzip or deflate
  bodies, per-item results, ``create`` -> 409 when the ``_id`` exists, data streams created from
  matching index templates with ``.ds-`` backing indices (the built-in ``logs`` and ``traces``
  templates are there), ``@timestamp`` required, ``create`` the only op type a data stream takes,
  constant_keyword ``data_stream.*`` fields, object-vs-value mapping conflicts answered with
  ``document_parsing_exception`` (``flattened`` fields take anything), invalid index names),
  ``PUT|GET|DELETE /_index_template/{name}``, ``GET|DELETE /_data_stream/{name}``,
  ``/{index}/_search`` and ``_count`` (match_all, term, ids), ``_refresh``, ``filter_path``.
* Headers as a node sends them: ``X-Elastic-Product: Elasticsearch`` on every answer, the
  compatibility media type back when the client asked for one, 406 for a body whose Content-Type is
  missing or not JSON/NDJSON, 400 ``media_type_header_exception`` for a compatible-with version the
  node does not speak (an 8.x double refuses the 9.x client's headers, as 8.x does), 413 above
  ``max_content_length`` (decompressed size), 401 with WWW-Authenticate when credentials are wrong.
* Injections for tests: per-item statuses (``fail_items``), whole-request failures
  (``fail_requests``), answers lost after the bulk was applied (``lose_responses``), an outage
  (``stop()`` then ``start()`` on the same port, data kept), credentials (API key, basic), write
  privileges limited to some data streams (``writable``), no ``monitor`` privilege.

Every request is recorded (``requests``) with its headers and decompressed body.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import json
import re
import secrets
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support import free_port

_COMPAT_MEDIA = re.compile(
    r"^application/vnd\.elasticsearch\+(json|x-ndjson)\s*;\s*compatible-with\s*=\s*(\d+)\s*$", re.IGNORECASE
)
_PLAIN_MEDIA = {"application/json", "application/x-ndjson"}
_INVALID_INDEX_CHARS = set('\\/*?"<>| ,#:')
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$")
_ERROR_TYPES = {
    400: ("document_parsing_exception", "[1:1] failed to parse: injected by the test"),
    401: ("security_exception", "unable to authenticate with provided credentials"),
    403: ("security_exception", "action [indices:data/write/bulk[s]] is unauthorized"),
    404: ("index_not_found_exception", "no such index"),
    409: (
        "version_conflict_engine_exception",
        "version conflict, document already exists (current version [1])",
    ),
    429: (
        "es_rejected_execution_exception",
        "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
        "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]",
    ),
    500: ("exception", "injected internal error"),
    503: ("unavailable_shards_exception", "primary shard is not active Timeout: [1m]"),
}

# Elasticsearch's built-in "logs" and "traces" index templates and the component templates they are
# made of (only the parts that decide data stream creation and field kinds).
_BUILTIN_COMPONENTS: dict[str, dict[str, Any]] = {
    "logs@mappings": {
        "template": {
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "data_stream": {
                        "properties": {
                            "type": {"type": "constant_keyword"},
                            "dataset": {"type": "constant_keyword"},
                            "namespace": {"type": "constant_keyword"},
                        }
                    },
                }
            }
        }
    },
    "logs@settings": {"template": {"settings": {"index": {"mapping": {"ignore_malformed": True}}}}},
    "traces@mappings": {
        "template": {
            "mappings": {
                "date_detection": False,
                "properties": {
                    "@timestamp": {"type": "date"},
                    "data_stream": {
                        "properties": {
                            "type": {"type": "constant_keyword"},
                            "dataset": {"type": "constant_keyword"},
                            "namespace": {"type": "constant_keyword"},
                        }
                    },
                },
            }
        }
    },
    "traces@settings": {"template": {"settings": {"index": {"mapping": {"ignore_malformed": True}}}}},
    "ecs@mappings": {"template": {"mappings": {"dynamic_templates": []}}},
}
_BUILTIN_TEMPLATES: dict[str, dict[str, Any]] = {
    "logs": {
        "index_patterns": ["logs-*-*"],
        "priority": 100,
        "data_stream": {"hidden": False, "allow_custom_routing": False},
        "composed_of": ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"],
        "ignore_missing_component_templates": ["logs@custom"],
        "_meta": {"description": "default logs template installed by x-pack", "managed": True},
        "version": 15,
        "allow_auto_create": True,
    },
    "traces": {
        "index_patterns": ["traces-*-*"],
        "priority": 100,
        "data_stream": {"hidden": False, "allow_custom_routing": False},
        "composed_of": ["traces@mappings", "traces@settings", "traces@custom", "ecs@mappings"],
        "ignore_missing_component_templates": ["traces@custom"],
        "_meta": {"description": "default traces template installed by x-pack", "managed": True},
        "version": 15,
        "allow_auto_create": True,
    },
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes  # decompressed
    wire_size: int  # bytes as received
    status: int = 0  # what the double answered


@dataclass
class Index:
    name: str
    uuid: str
    data_stream: str | None
    template: str | None
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # dotted path -> "object" or a field type
    constants: dict[str, Any] = field(default_factory=dict)  # constant_keyword values seen
    seq_no: int = 0


@dataclass
class DataStream:
    name: str
    template: str
    indices: list[str]


@dataclass
class _RequestFailure:
    status: int
    retry_after: float | None
    proxy: bool
    apply_first: bool


class _Reject(Exception):
    """A whole-request error answer."""

    def __init__(self, status: int, error_type: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.extra = extra


class _ItemError(Exception):
    def __init__(self, status: int, error_type: str, reason: str, caused_by: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.caused_by = caused_by


def _error_body(status: int, error_type: str, reason: str, **extra: Any) -> dict[str, Any]:
    if not error_type:  # answers of the REST layer itself (406, 405, no handler) carry a plain string
        return {"error": reason, "status": status}
    cause = {"type": error_type, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def _filter(value: Any, patterns: list[list[str]]) -> Any:
    """Elasticsearch's filter_path: dotted patterns with ``*`` per level; arrays are transparent."""
    if isinstance(value, list):
        kept = [_filter(v, patterns) for v in value]
        return [v for v in kept if v is not None]
    if not isinstance(value, dict):
        return None
    out = {}
    for key, sub in value.items():
        rests = [p[1:] for p in patterns if fnmatch.fnmatchcase(key, p[0])]
        if not rests:
            continue
        if any(not rest for rest in rests):
            out[key] = sub
            continue
        filtered = _filter(sub, rests)
        if filtered not in (None, {}, []):
            out[key] = filtered
    return out or None


def _get_path(source: dict[str, Any], dotted: str) -> Any:
    """A field of a document whether it was sent nested or with dotted names."""
    if dotted in source:
        return source[dotted]
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if isinstance(source.get(head), dict):
            found = _get_path(source[head], ".".join(parts[i:]))
            if found is not None:
                return found
    return None


def _leaves(source: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """(dotted path, value, is_object) for every field, dotted names expanded as Elasticsearch does."""
    for key, value in source.items():
        path = f"{prefix}.{key}" if prefix else key
        parts = path.split(".")
        for i in range(1, len(parts)):
            yield ".".join(parts[:i]), None, True
        if isinstance(value, dict):
            yield path, None, True
            yield from _leaves(value, path)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            yield path, None, True
            for v in value:
                yield from _leaves(v, path)
        elif value is not None:
            yield path, value, False


def _kinds_from_mappings(mappings: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for name, spec in (mappings.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        if "properties" in spec or spec.get("type", "object") == "object":
            yield path, "object"
            yield from _kinds_from_mappings(spec, path)
        else:
            yield path, str(spec["type"])


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "float"
    return "keyword"


class ElasticsearchDouble:
    """An in-memory Elasticsearch node on 127.0.0.1 for tests (see the module docstring)."""

    def __init__(
        self,
        *,
        api_key: str | tuple[str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        version: str = "9.1.0",
        max_content_length: int = 100 * 1024 * 1024,
        writable: Iterable[str] | None = None,
        monitor: bool = True,
        port: int | None = None,
    ) -> None:
        self.version = version
        self.major = int(version.split(".", 1)[0])
        self.max_content_length = max_content_length
        self.port = port or free_port()
        self.cluster_uuid = uuid.uuid4().hex[:22]
        self._credentials: set[str] = set()
        if api_key is not None:
            encoded = (
                base64.b64encode(f"{api_key[0]}:{api_key[1]}".encode()).decode()
                if isinstance(api_key, tuple)
                else api_key
            )
            self._credentials.add(f"ApiKey {encoded}")
        if username is not None:
            self._credentials.add(
                "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            )
        self.writable = list(writable) if writable is not None else None
        self.monitor = monitor

        self.requests: list[RecordedRequest] = []
        self.templates: dict[str, dict[str, Any]] = {k: dict(v) for k, v in _BUILTIN_TEMPLATES.items()}
        self.components: dict[str, dict[str, Any]] = dict(_BUILTIN_COMPONENTS)
        self.indices: dict[str, Index] = {}
        self.data_streams: dict[str, DataStream] = {}

        self._item_failures: deque[tuple[int, str, str]] = deque()
        self._request_failures: deque[_RequestFailure] = deque()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listens (again) on the same port; what was stored before a stop() is still there."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Decompression is ours: the recorded wire size and the 413 check need both sizes.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        """Closes the listener and every connection, like a node going down."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> ElasticsearchDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- injection ----------------------------------------------------------------------------------

    def fail_items(self, statuses: Iterable[int | tuple[int, str, str]]) -> None:
        """The next bulk items (across requests) answer these statuses in order, without being stored.

        2xx entries let that item through normally; a tuple gives (status, error type, reason).
        """
        for entry in statuses:
            if isinstance(entry, tuple):
                self._item_failures.append(entry)
            else:
                error_type, reason = _ERROR_TYPES.get(entry, ("exception", f"injected status {entry}"))
                self._item_failures.append((entry, error_type, reason))

    def fail_requests(
        self, count: int, status: int = 503, retry_after: float | None = None, proxy: bool = False
    ) -> None:
        """The next ``count`` bulk requests fail whole with ``status`` (nothing stored).

        ``proxy`` answers like a reverse proxy in front of the node: HTML, no X-Elastic-Product.
        """
        for _ in range(count):
            self._request_failures.append(_RequestFailure(status, retry_after, proxy, apply_first=False))

    def lose_responses(self, count: int, status: int = 504) -> None:
        """The next ``count`` bulk requests are applied, then answered ``status`` as by a proxy that
        timed out: the client cannot know that its documents landed."""
        for _ in range(count):
            self._request_failures.append(_RequestFailure(status, None, proxy=True, apply_first=True))

    # -- inspection ---------------------------------------------------------------------------------

    @property
    def bulk_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    def _resolve(self, pattern: str) -> list[Index]:
        found: dict[str, Index] = {}
        for part in pattern.split(","):
            for name, ds in self.data_streams.items():
                if fnmatch.fnmatchcase(name, part):
                    for index_name in ds.indices:
                        found[index_name] = self.indices[index_name]
            for name, index in self.indices.items():
                if name == part or (not name.startswith(".") and fnmatch.fnmatchcase(name, part)):
                    found[name] = index
        return list(found.values())

    def documents(self, pattern: str = "*") -> list[dict[str, Any]]:
        """Sources of the documents in the data streams or indices matching ``pattern``."""
        return [doc for index in self._resolve(pattern) for doc in index.docs.values()]

    def document_ids(self, pattern: str = "*") -> list[str]:
        return [doc_id for index in self._resolve(pattern) for doc_id in index.docs]

    def count(self, pattern: str = "*") -> int:
        return sum(len(index.docs) for index in self._resolve(pattern))

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = RecordedRequest(request.method, request.path, dict(request.query), headers, raw, len(raw))
        self.requests.append(recorded)
        accept_compat: int | None = None
        try:
            encoding = headers.get("content-encoding", "").lower()
            if raw and encoding in ("gzip", "deflate"):
                try:
                    recorded.body = gzip.decompress(raw) if encoding == "gzip" else zlib.decompress(raw)
                except (OSError, EOFError, zlib.error) as exc:
                    raise _Reject(400, "illegal_argument_exception", f"failed to decompress: {exc}") from exc
            if len(recorded.body) > self.max_content_length:
                response = web.Response(status=413, headers={"X-Elastic-Product": "Elasticsearch"})
                recorded.status = 413
                return response
            accept_compat = self._check_media_types(headers, bool(recorded.body))
            self._check_auth(headers, request)
            status, payload, extra_headers = await self._route(request, recorded)
        except _Reject as exc:
            status, payload, extra_headers = (
                exc.status,
                _error_body(exc.status, exc.error_type, exc.reason, **exc.extra),
                {},
            )
            if exc.status == 401:
                extra_headers = {"WWW-Authenticate": 'Basic realm="security", charset="UTF-8", ApiKey'}
        recorded.status = status
        if isinstance(payload, web.StreamResponse):
            return payload
        # Like AbstractRestChannel.newErrorBuilder: error answers are never filtered.
        if request.query.get("filter_path") and isinstance(payload, dict) and status < 300:
            patterns = [p.split(".") for p in request.query["filter_path"].split(",") if p]
            payload = _filter(payload, patterns) or {}
        content_type = (
            f"application/vnd.elasticsearch+json;compatible-with={accept_compat}"
            if accept_compat is not None
            else "application/json"
        )
        body = b"" if request.method == "HEAD" else json.dumps(payload).encode()
        return web.Response(
            status=status,
            body=body,
            headers={"Content-Type": content_type, "X-Elastic-Product": "Elasticsearch", **extra_headers},
        )

    def _check_media_types(self, headers: dict[str, str], has_body: bool) -> int | None:
        """Validates Content-Type (of a body) and Accept as the REST layer does; returns the
        compatible-with version Accept asked for, if any."""
        accept = headers.get("accept", "")
        content_type = headers.get("content-type", "") if has_body else ""
        accept_match = _COMPAT_MEDIA.match(accept)
        content_match = _COMPAT_MEDIA.match(content_type)
        if (
            has_body
            and not content_match
            and content_type.split(";", 1)[0].strip().lower() not in _PLAIN_MEDIA
        ):
            raise _Reject(406, "", f"Content-Type header [{content_type}] is not supported")
        versions = {}
        if accept_match:
            versions["Accept"] = (int(accept_match.group(2)), accept)
        if content_match:
            versions["Content-Type"] = (int(content_match.group(2)), content_type)
        supported = (self.major, self.major - 1)
        for name, (version, value) in versions.items():
            if version not in supported:
                raise _Reject(
                    400,
                    "media_type_header_exception",
                    "Invalid media-type value on headers [Content-Type, Accept]",
                    caused_by={
                        "type": "status_exception",
                        "reason": f"{name} version must be either version {supported[0]} or {supported[1]}, "
                        f"but found {version}. {name}={value}",
                    },
                )
        compat_asked = bool(versions)
        both_agree = (
            accept_match is not None
            and content_match is not None
            and versions["Accept"][0] == versions["Content-Type"][0]
        )
        if has_body and compat_asked and accept not in ("", "*/*") and not both_agree:
            raise _Reject(
                400,
                "media_type_header_exception",
                "A compatible version is required on both Content-Type and Accept headers if either one has "
                "requested a compatible version and the compatible versions must match. "
                f"Accept={accept}, Content-Type={content_type}",
            )
        return versions["Accept"][0] if "Accept" in versions else None

    def _check_auth(self, headers: dict[str, str], request: web.Request) -> None:
        if not self._credentials:
            return
        given = headers.get("authorization")
        target = request.path_qs
        if not given:
            raise _Reject(
                401, "security_exception", f"missing authentication credentials for REST request [{target}]"
            )
        if given not in self._credentials:
            raise _Reject(
                401,
                "security_exception",
                "unable to authenticate with provided credentials and anonymous access is not allowed for "
                "this request",
            )

    async def _route(self, request: web.Request, rec: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        method, parts = request.method, [p for p in request.path.split("/") if p]
        if not parts:
            if method in ("GET", "HEAD"):
                return self._info()
            raise self._wrong_method(request, ["GET", "HEAD"])
        last = parts[-1]
        if last == "_bulk" and len(parts) <= 2:
            if method not in ("POST", "PUT"):
                raise self._wrong_method(request, ["POST", "PUT"])
            return self._bulk(rec, parts[0] if len(parts) == 2 else None)
        if parts[0] == "_index_template":
            return self._index_template(method, parts[1] if len(parts) > 1 else None, rec)
        if parts[0] == "_data_stream":
            return self._data_stream(method, parts[1] if len(parts) > 1 else "*")
        if last in ("_search", "_count") and len(parts) <= 2:
            return self._search(parts[0] if len(parts) == 2 else "*", rec, count=last == "_count")
        if last == "_refresh" and len(parts) <= 2:
            shards = len(self._resolve(parts[0] if len(parts) == 2 else "*"))
            return 200, {"_shards": {"total": shards, "successful": shards, "failed": 0}}, {}
        raise _Reject(400, "", f"no handler found for uri [{request.path_qs}] and method [{method}]")

    def _wrong_method(self, request: web.Request, allowed: list[str]) -> _Reject:
        return _Reject(
            405,
            "",
            f"Incorrect HTTP method for uri [{request.path_qs}] and method [{request.method}], "
            f"allowed: [{', '.join(allowed)}]",
        )

    # -- endpoints ----------------------------------------------------------------------------------

    def _info(self) -> tuple[int, Any, dict[str, str]]:
        if not self.monitor:
            raise _Reject(
                403, "security_exception", "action [cluster:monitor/main] is unauthorized for API key"
            )
        return (
            200,
            {
                "name": "double-0",
                "cluster_name": "burnline-test",
                "cluster_uuid": self.cluster_uuid,
                "version": {
                    "number": self.version,
                    "build_flavor": "default",
                    "build_type": "docker",
                    "build_hash": "0" * 40,
                    "build_date": "2025-01-01T00:00:00.000000000Z",
                    "build_snapshot": False,
                    "lucene_version": "10.0.0",
                    "minimum_wire_compatibility_version": f"{self.major - 1}.18.0",
                    "minimum_index_compatibility_version": f"{self.major - 1}.0.0",
                },
                "tagline": "You Know, for Search",
            },
            {},
        )

    def _bulk(self, rec: RecordedRequest, default_index: str | None) -> tuple[int, Any, dict[str, str]]:
        failure = self._request_failures.popleft() if self._request_failures else None
        if failure is not None and not failure.apply_first:
            return self._failed_request(failure)
        started = time.monotonic()
        operations = self._parse_bulk(rec.body, default_index)
        items = [self._bulk_item(op, meta, source) for op, meta, source in operations]
        payload = {
            "errors": any("error" in next(iter(i.values())) for i in items),
            "took": int((time.monotonic() - started) * 1000),
            "items": items,
        }
        if failure is not None:
            return self._failed_request(failure)
        return 200, payload, {}

    def _failed_request(self, failure: _RequestFailure) -> tuple[int, Any, dict[str, str]]:
        headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
        if failure.proxy:
            html = f"<html><body><h1>{failure.status}</h1>upstream failed</body></html>"
            return (
                failure.status,
                web.Response(status=failure.status, text=html, content_type="text/html", headers=headers),
                {},
            )
        error_type, reason = _ERROR_TYPES.get(
            failure.status, ("exception", f"injected status {failure.status}")
        )
        return failure.status, _error_body(failure.status, error_type, reason), headers

    def _parse_bulk(self, body: bytes, default_index: str | None) -> list[tuple[str, dict[str, Any], Any]]:
        if body and not body.endswith(b"\n"):
            raise _Reject(
                400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
            )
        lines = body.split(b"\n")
        operations = []
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if not line:
                continue
            try:
                action = json.loads(line)
            except ValueError as exc:
                raise _Reject(
                    400, "x_content_parse_exception", f"[{i}:1] Unexpected character in action line: {exc}"
                ) from exc
            if not isinstance(action, dict) or len(action) != 1:
                raise _Reject(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i}], expected START_OBJECT",
                )
            op, meta = next(iter(action.items()))
            if op not in ("create", "index", "update", "delete") or not isinstance(meta, dict):
                raise _Reject(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i}], expected field [create], [delete], [index] or "
                    f"[update] but found [{op}]",
                )
            meta = dict(meta)
            meta.setdefault("_index", default_index)
            if not meta["_index"]:
                raise _Reject(
                    400, "action_request_validation_exception", "Validation Failed: 1: index is missing;"
                )
            source: Any = None
            if op != "delete":
                if i >= len(lines) or not lines[i].strip():
                    raise _Reject(
                        400, "illegal_argument_exception", f"The bulk request action [{i}] has no source"
                    )
                source = lines[i]
                i += 1
            operations.append((op, meta, source))
        if not operations:
            raise _Reject(
                400, "action_request_validation_exception", "Validation Failed: 1: no requests added;"
            )
        return operations

    def _bulk_item(self, op: str, meta: dict[str, Any], source: Any) -> dict[str, Any]:
        name = str(meta["_index"])
        doc_id = meta.get("_id")
        if self._item_failures:
            status, error_type, reason = self._item_failures.popleft()
            if not 200 <= status < 300:
                error: dict[str, Any] = {"type": error_type, "reason": reason}
                return {op: {"_index": name, "_id": doc_id, "status": status, "error": error}}
        try:
            return {op: self._apply(op, name, doc_id, meta, source)}
        except _ItemError as exc:
            error = {"type": exc.error_type, "reason": exc.reason}
            if exc.caused_by:
                error["caused_by"] = exc.caused_by
            target = self._write_index_name(name)
            if target is not None:
                error.update({"index_uuid": self.indices[target].uuid, "shard": "0", "index": target})
            return {op: {"_index": target or name, "_id": doc_id, "status": exc.status, "error": error}}

    def _write_index_name(self, name: str) -> str | None:
        if name in self.data_streams:
            return self.data_streams[name].indices[-1]
        return name if name in self.indices else None

    def _apply(self, op: str, name: str, doc_id: Any, meta: dict[str, Any], source: Any) -> dict[str, Any]:
        self._check_index_name(name)
        if self.writable is not None and not any(fnmatch.fnmatchcase(name, p) for p in self.writable):
            raise _ItemError(
                403,
                "security_exception",
                "action [indices:data/write/bulk[s]] is unauthorized for API key id [test] "
                f"on indices [{name}], "
                "this action is granted by the index privileges [create_doc,create,index,write,all]",
            )
        if op == "update":
            raise _ItemError(400, "illegal_argument_exception", "the test double does not implement update")
        index = self._write_index(name, create=op != "delete")
        if index is None:
            raise _ItemError(404, "index_not_found_exception", f"no such index [{name}]")
        if index.data_stream is not None and op != "create":
            raise _ItemError(
                400,
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            )
        if op == "delete":
            found = index.docs.pop(str(doc_id), None)
            index.seq_no += 1
            return self._result(
                index, str(doc_id), 200 if found else 404, "deleted" if found else "not_found"
            )
        try:
            document = json.loads(source)
        except ValueError as exc:
            raise _ItemError(400, "document_parsing_exception", f"[1:1] failed to parse: {exc}") from exc
        if not isinstance(document, dict):
            raise _ItemError(400, "document_parsing_exception", "[1:1] failed to parse: expected an object")
        doc_id = (
            str(doc_id) if doc_id is not None else base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
        )
        if len(doc_id.encode()) > 512:
            raise _ItemError(
                400,
                "illegal_argument_exception",
                f"id [{doc_id}] is too long, must be no longer than 512 bytes",
            )
        if index.data_stream is not None:
            timestamp = _get_path(document, "@timestamp")
            if timestamp is None:
                raise _ItemError(
                    400,
                    "document_parsing_exception",
                    "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing",
                )
            if not (
                isinstance(timestamp, int) or (isinstance(timestamp, str) and _TIMESTAMP.match(timestamp))
            ):
                raise _ItemError(
                    400,
                    "document_parsing_exception",
                    "[1:15] failed to parse field [@timestamp] of type "
                    f"[{index.kinds.get('@timestamp', 'date')}] "
                    f"in document with id '{doc_id}'. Preview of field's value: '{timestamp}'",
                )
        if op == "create" and doc_id in index.docs:
            raise _ItemError(
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists (current version [1])",
            )
        self._map(index, doc_id, document)
        created = doc_id not in index.docs
        index.docs[doc_id] = document
        index.seq_no += 1
        return self._result(index, doc_id, 201 if created else 200, "created" if created else "updated")

    @staticmethod
    def _result(index: Index, doc_id: str, status: int, result: str) -> dict[str, Any]:
        return {
            "_index": index.name,
            "_id": doc_id,
            "_version": 1,
            "result": result,
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": index.seq_no - 1,
            "_primary_term": 1,
            "status": status,
        }

    @staticmethod
    def _check_index_name(name: str) -> None:
        problem = None
        if name != name.lower():
            problem = "must be lowercase"
        elif name[0] in "_-+":
            problem = "must not start with '_', '-', or '+'"
        elif set(name) & _INVALID_INDEX_CHARS:
            problem = 'must not contain the following characters [\\, /, *, ?, ", <, >, |, " ", ",", #, :]'
        elif len(name.encode()) > 255:
            problem = "index name is too long, (" + str(len(name.encode())) + " > 255)"
        elif name in (".", ".."):
            problem = "must not be '.' or '..'"
        if problem:
            raise _ItemError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}")

    def _matching_template(self, name: str) -> tuple[str, dict[str, Any]] | None:
        matches = [
            (t.get("priority", 0), tname, t)
            for tname, t in self.templates.items()
            if any(fnmatch.fnmatchcase(name, p) for p in t.get("index_patterns", []))
        ]
        if not matches:
            return None
        _, tname, template = max(matches, key=lambda m: (m[0], m[1]))
        return tname, template

    def _write_index(self, name: str, create: bool) -> Index | None:
        existing = self._write_index_name(name)
        if existing is not None:
            return self.indices[existing]
        if not create:
            return None
        matched = self._matching_template(name)
        kinds: dict[str, str] = {}
        template_name = None
        if matched is not None:
            template_name, template = matched
            for component in template.get("composed_of", []):
                mappings = self.components.get(component, {}).get("template", {}).get("mappings", {})
                kinds.update(_kinds_from_mappings(mappings))
            kinds.update(_kinds_from_mappings(template.get("template", {}).get("mappings", {})))
        if matched is not None and "data_stream" in matched[1]:
            backing = f".ds-{name}-{time.strftime('%Y.%m.%d', time.gmtime())}-000001"
            self.data_streams[name] = DataStream(name, str(template_name), [backing])
            index = Index(backing, uuid.uuid4().hex[:22], name, template_name, kinds=kinds)
        else:
            index = Index(name, uuid.uuid4().hex[:22], None, template_name, kinds=kinds)
        self.indices[index.name] = index
        return index

    def _map(self, index: Index, doc_id: str, document: dict[str, Any]) -> None:
        """Dynamic mapping, as far as conflicts go: a path is an object or a value, never both.

        A ``flattened`` field takes any value or object under it, mapping nothing more.
        """
        new: dict[str, str] = {}
        flattened = {path for path, kind in index.kinds.items() if kind == "flattened"}
        for path, value, is_object in _leaves(document):
            if flattened and any(path == f or path.startswith(f + ".") for f in flattened):
                continue
            known = new.get(path) or index.kinds.get(path)
            if is_object:
                if known is not None and known != "object":
                    raise _ItemError(
                        400,
                        "document_parsing_exception",
                        f"[1:2] failed to parse field [{path}] of type [{known}] in document with id "
                        f"'{doc_id}'. "
                        f"Preview of field's value: '{{...}}'",
                        {
                            "type": "illegal_state_exception",
                            "reason": "Can't get text on a START_OBJECT at 1:2",
                        },
                    )
                new[path] = "object"
                continue
            if known == "object":
                raise _ItemError(
                    400,
                    "document_parsing_exception",
                    f"[1:2] object mapping for [{path}] tried to parse field [{path.rsplit('.', 1)[-1]}] as "
                    "object, but found a concrete value",
                )
            if known == "constant_keyword":
                expected = index.constants.get(path)
                if expected is not None and expected != value:
                    raise _ItemError(
                        400,
                        "document_parsing_exception",
                        f"[1:2] failed to parse field [{path}] of type [constant_keyword] in document "
                        "with id "
                        f"'{doc_id}'. Preview of field's value: '{value}'",
                        {
                            "type": "illegal_argument_exception",
                            "reason": f"[constant_keyword] field [{path}] only accepts values that are "
                            "equal to "
                            f"the value defined in the mappings [{expected}], but got [{value}]",
                        },
                    )
            if known is None:
                new[path] = _value_type(value[0] if isinstance(value, list) and value else value)
        for path, value, is_object in _leaves(document):
            if not is_object and index.kinds.get(path) == "constant_keyword":
                index.constants.setdefault(path, value)
        index.kinds.update(new)

    def _index_template(
        self, method: str, name: str | None, rec: RecordedRequest
    ) -> tuple[int, Any, dict[str, str]]:
        if method in ("PUT", "POST") and name:
            try:
                body = json.loads(rec.body or b"{}")
            except ValueError as exc:
                raise _Reject(400, "x_content_parse_exception", str(exc)) from exc
            patterns = body.get("index_patterns")
            if not patterns:
                raise _Reject(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index patterns are missing;",
                )
            if isinstance(patterns, str):
                body["index_patterns"] = patterns = [patterns]
            missing = [
                c
                for c in body.get("composed_of", [])
                if c not in self.components and c not in body.get("ignore_missing_component_templates", [])
            ]
            if missing:
                raise _Reject(
                    400,
                    "invalid_index_template_exception",
                    f"index_template [{name}] invalid, cause [index template [{name}] specifies "
                    "component templates "
                    f"{missing} that do not exist]",
                )
            priority = body.get("priority", 0)
            for other_name, other in self.templates.items():
                if (
                    other_name != name
                    and other.get("priority", 0) == priority
                    and set(other.get("index_patterns", [])) & set(patterns)
                ):
                    raise _Reject(
                        400,
                        "illegal_argument_exception",
                        f"index template [{name}] has index patterns {patterns} matching patterns "
                        f"from existing templates [{other_name}] with patterns "
                        f"({other_name} => {other['index_patterns']}) that "
                        f"have the same priority [{priority}], multiple index templates may not match during "
                        "index creation, please use a different priority",
                    )
            if rec.query.get("create") == "true" and name in self.templates:
                raise _Reject(400, "illegal_argument_exception", f"index template [{name}] already exists")
            self.templates[name] = body
            return 200, {"acknowledged": True}, {}
        if method == "GET":
            found = [
                {"name": tname, "index_template": t}
                for tname, t in self.templates.items()
                if name is None or fnmatch.fnmatchcase(tname, name)
            ]
            if name and "*" not in name and not found:
                raise _Reject(
                    404, "resource_not_found_exception", f"index template matching [{name}] not found"
                )
            return 200, {"index_templates": found}, {}
        if method == "DELETE" and name:
            if name not in self.templates:
                raise _Reject(404, "resource_not_found_exception", f"index_template [{name}] missing")
            del self.templates[name]
            return 200, {"acknowledged": True}, {}
        raise _Reject(405, "", f"Incorrect HTTP method for uri [/_index_template] and method [{method}]")

    def _data_stream(self, method: str, name: str) -> tuple[int, Any, dict[str, str]]:
        matched = [ds for dname, ds in self.data_streams.items() if fnmatch.fnmatchcase(dname, name)]
        if not matched and "*" not in name:
            raise _Reject(
                404, "index_not_found_exception", f"no such index [{name}]", **{"resource.id": name}
            )
        if method == "DELETE":
            for ds in matched:
                for index_name in ds.indices:
                    self.indices.pop(index_name, None)
                del self.data_streams[ds.name]
            return 200, {"acknowledged": True}, {}
        if method != "GET":
            raise _Reject(
                405, "", f"Incorrect HTTP method for uri [/_data_stream/{name}] and method [{method}]"
            )
        return (
            200,
            {
                "data_streams": [
                    {
                        "name": ds.name,
                        "timestamp_field": {"name": "@timestamp"},
                        "indices": [
                            {"index_name": i, "index_uuid": self.indices[i].uuid} for i in ds.indices
                        ],
                        "generation": len(ds.indices),
                        "status": "GREEN",
                        "template": ds.template,
                        "hidden": False,
                        "system": False,
                    }
                    for ds in matched
                ]
            },
            {},
        )

    def _search(self, target: str, rec: RecordedRequest, count: bool) -> tuple[int, Any, dict[str, str]]:
        try:
            body = json.loads(rec.body) if rec.body else {}
        except ValueError as exc:
            raise _Reject(400, "x_content_parse_exception", str(exc)) from exc
        indices = self._resolve(target)
        if not indices and "*" not in target and target not in self.data_streams:
            raise _Reject(
                404, "index_not_found_exception", f"no such index [{target}]", **{"resource.id": target}
            )
        query = body.get("query") or {"match_all": {}}
        hits = [
            {"_index": index.name, "_id": doc_id, "_score": 1.0, "_source": doc}
            for index in indices
            for doc_id, doc in index.docs.items()
            if self._matches(query, doc_id, doc)
        ]
        shards = {"total": len(indices), "successful": len(indices), "skipped": 0, "failed": 0}
        if count:
            return 200, {"count": len(hits), "_shards": shards}, {}
        size = int(rec.query.get("size", body.get("size", 10)))
        return (
            200,
            {
                "took": 1,
                "timed_out": False,
                "_shards": shards,
                "hits": {
                    "total": {"value": len(hits), "relation": "eq"},
                    "max_score": 1.0 if hits else None,
                    "hits": hits[:size],
                },
            },
            {},
        )

    @staticmethod
    def _matches(query: dict[str, Any], doc_id: str, doc: dict[str, Any]) -> bool:
        ((kind, spec),) = query.items()
        if kind == "match_all":
            return True
        if kind == "ids":
            return doc_id in spec.get("values", [])
        if kind == "term":
            ((fname, wanted),) = spec.items()
            if isinstance(wanted, dict):
                wanted = wanted.get("value")
            value = _get_path(doc, fname)
            return value == wanted or (isinstance(value, list) and wanted in value)
        raise _Reject(
            400, "parsing_exception", f"unknown query [{kind}] (the test double knows match_all, ids, term)"
        )
