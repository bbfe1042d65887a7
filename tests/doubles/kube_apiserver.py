"""A test double of the Kubernetes API server's pod endpoints, on loopback.

Not an API server: it keeps pods in memory and implements what pod discovery uses, the way the real
one answers it:

* ``GET /api/v1/pods`` and ``/api/v1/namespaces/{ns}/pods``: a PodList with
  ``metadata.resourceVersion``, paged with ``limit`` and ``continue`` (a continue token from before
  an expiry is answered 410 Gone, as an expired one is); ``labelSelector`` (``=``, ``==``, ``!=``,
  ``key``, ``!key``) and ``fieldSelector`` (``metadata.name``, ``metadata.namespace``,
  ``spec.nodeName``, ``status.phase``).
* The same paths with ``watch=true``: a chunked stream of JSON lines, one event each (``ADDED``,
  ``MODIFIED``, ``DELETED``, ``BOOKMARK`` when ``allowWatchBookmarks`` asks for them), starting
  after the ``resourceVersion`` asked for: recorded events newer than it are replayed first. A
  version older than the last expiry gets HTTP 200 and one ``ERROR`` event with a 410 Status ("too
  old resource version"), then the end of the stream, as the real server does.

The test drives it: ``add``/``modify``/``delete`` pods (each a new resourceVersion, sent to the open
watches), ``expire()`` (open watches get the 410 ERROR; older versions are gone), ``disconnect()``
(watch connections dropped mid-stream), ``end_watches()`` (streams end cleanly, as on timeoutSeconds),
``bookmark()``, ``fail_next`` (statuses for the next requests). Every request is recorded
(``requests``) with its path, namespace and query.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_END = "end"
_ABORT = "abort"


@dataclass
class RecordedRequest:
    path: str
    namespace: str | None
    query: dict[str, str]

    @property
    def watch(self) -> bool:
        return self.query.get("watch", "").lower() in ("true", "1")

    @property
    def resource_version(self) -> str | None:
        return self.query.get("resourceVersion")


def make_pod(
    name: str,
    namespace: str = "default",
    *,
    ip: str = "127.0.0.1",
    port: int | None = None,
    scrape: bool = True,
    path: str | None = None,
    scheme: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    container_ports: list[int] | None = None,
    container: str = "app",
    phase: str = "Running",
    node: str = "node-1",
) -> dict[str, Any]:
    """A Pod object as the API server returns it (the fields discovery reads, and a few more)."""
    notes = dict(annotations or {})
    if scrape:
        notes["prometheus.io/scrape"] = "true"
    if port is not None:
        notes["prometheus.io/port"] = str(port)
    if path is not None:
        notes["prometheus.io/path"] = path
    if scheme is not None:
        notes["prometheus.io/scheme"] = scheme
    ports = [{"containerPort": p, "protocol": "TCP", "name": f"p{p}"} for p in container_ports or []]
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
            "labels": dict(labels or {}),
            "annotations": notes,
            "creationTimestamp": "2024-01-01T00:00:00Z",
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": container, "image": "example/app:1", "ports": ports}],
        },
        "status": {"phase": phase, "podIP": ip if phase == "Running" else None},
    }


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


_FIELDS = {
    "metadata.name": lambda pod: pod["metadata"].get("name"),
    "metadata.namespace": lambda pod: pod["metadata"].get("namespace"),
    "spec.nodeName": lambda pod: pod["spec"].get("nodeName"),
    "status.phase": lambda pod: pod["status"].get("phase"),
}


def _check_field_selector(selector: str) -> str | None:
    """An error message for an unsupported field selector, as the API server's 400 says it."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key = term.split("!=" if "!=" in term else "=", 1)[0].strip()
        if key not in _FIELDS or "=" not in term:
            return f'field label not supported: "{key}"'
    return None


def _fields_match(selector: str, pod: dict[str, Any]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, value = (s.strip() for s in term.replace("==", "=").split("!=" if negate else "=", 1))
        if (str(_FIELDS[key](pod) or "") == value) == negate:
            return False
    return True


@dataclass
class _Watcher:
    namespace: str | None
    labels: str
    fields: str
    bookmarks: bool
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def wants(self, pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return _selector_matches(self.labels, meta.get("labels") or {}) and _fields_match(self.fields, pod)


class KubeAPIServer:
    def __init__(self, first_version: int = 1000) -> None:
        self.version = first_version
        self.pods: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        # Versions before this one are compacted: watching from them gets 410.
        self.oldest = 0
        self.requests: list[RecordedRequest] = []
        self.fail_next: list[int] = []
        self.watchers: list[_Watcher] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        assert sockets
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.end_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what the test does

    def add(self, pod: dict[str, Any]) -> int:
        return self._record("ADDED", pod)

    def modify(self, pod: dict[str, Any]) -> int:
        return self._record("MODIFIED", pod)

    def delete(self, namespace: str, name: str) -> int:
        pod = self.pods[f"{namespace}/{name}"]
        return self._record("DELETED", pod)

    def expire(self) -> None:
        """Compacts history: every version so far is too old; open watches get the 410 ERROR."""
        self.oldest = self.version + 1
        self.history.clear()
        for watcher in self.watchers:
            watcher.queue.put_nowait(self._gone_event(self.oldest - 1))
            watcher.queue.put_nowait(_END)

    def bookmark(self) -> int:
        """A BOOKMARK to every watch that asked for them; returns its resourceVersion."""
        self.version += 1
        event = {
            "type": "BOOKMARK",
            "object": {"kind": "Pod", "metadata": {"resourceVersion": str(self.version)}},
        }
        for watcher in self.watchers:
            if watcher.bookmarks:
                watcher.queue.put_nowait(event)
        return self.version

    def disconnect(self) -> None:
        """Drops every watch connection mid-stream (a network failure)."""
        for watcher in self.watchers:
            watcher.queue.put_nowait(_ABORT)

    def end_watches(self) -> None:
        """Ends every watch stream cleanly (the server's timeoutSeconds)."""
        for watcher in self.watchers:
            watcher.queue.put_nowait(_END)

    def lists(self) -> list[RecordedRequest]:
        return [r for r in self.requests if not r.watch]

    def watches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.watch]

    # -- internals

    def _record(self, kind: str, pod: dict[str, Any]) -> int:
        self.version += 1
        pod = copy.deepcopy(pod)
        pod["metadata"]["resourceVersion"] = str(self.version)
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        if kind == "DELETED":
            self.pods.pop(key, None)
        else:
            self.pods[key] = pod
        self.history.append((self.version, kind, pod))
        for watcher in self.watchers:
            if watcher.wants(pod):
                watcher.queue.put_nowait({"type": kind, "object": pod})
        return self.version

    @staticmethod
    def _gone_event(version: int) -> dict[str, Any]:
        return {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {version} ({version + 1})",
                "reason": "Expired",
                "code": 410,
            },
        }

    @staticmethod
    def _status(code: int, reason: str, message: str) -> web.Response:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
        }
        body["code"] = code  # type: ignore[assignment]
        return web.json_response(body, status=code)

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info.get("namespace")
        query = dict(request.query)
        recorded = RecordedRequest(request.path, namespace, query)
        self.requests.append(recorded)
        if self.fail_next:
            code = self.fail_next.pop(0)
            return self._status(code, "InternalError", f"injected failure {code}")
        fields = query.get("fieldSelector", "")
        problem = _check_field_selector(fields)
        if problem:
            return self._status(400, "BadRequest", problem)
        labels = query.get("labelSelector", "")
        if recorded.watch:
            return await self._watch(request, namespace, labels, fields, query)
        return self._list(namespace, labels, fields, query)

    def _list(self, namespace: str | None, labels: str, fields: str, query: dict[str, str]) -> web.Response:
        probe = _Watcher(namespace, labels, fields, False)
        items = [pod for _, pod in sorted(self.pods.items()) if probe.wants(pod)]
        start = 0
        token = query.get("continue")
        if token:
            version, _, offset = token.partition(":")
            if int(version) < self.oldest:
                return self._status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                )
            start = int(offset)
        limit = int(query.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        metadata: dict[str, Any] = {"resourceVersion": str(self.version)}
        if limit and start + limit < len(items):
            metadata["continue"] = f"{self.version}:{start + limit}"
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page})

    async def _watch(
        self, request: web.Request, namespace: str | None, labels: str, fields: str, query: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        watcher = _Watcher(
            namespace, labels, fields, query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        )
        asked = query.get("resourceVersion")
        since = int(asked) if asked and asked != "0" else self.version
        if since < self.oldest - 1:
            await response.write(json.dumps(self._gone_event(since)).encode() + b"\n")
            await response.write_eof()
            return response
        # Replay and registration happen with no await between them: no event can fall in a gap.
        for version, kind, pod in self.history:
            if version > since and watcher.wants(pod):
                watcher.queue.put_nowait({"type": kind, "object": pod})
        self.watchers.append(watcher)
        timeout = float(query.get("timeoutSeconds") or 3600)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    item = _END
                if item == _END:
                    await response.write_eof()
                    return response
                if item == _ABORT:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await response.write(json.dumps(item).encode() + b"\n")
        finally:
            self.watchers.remove(watcher)
