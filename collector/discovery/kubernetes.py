"""Kubernetes pod discovery: pods annotated for scraping, kept current with list + watch.

A pod is a target when it is annotated ``prometheus.io/scrape: "true"``, is Running and has a pod IP
(the convention of Prometheus' example ``kubernetes-pods`` job and of the Prometheus Helm chart):

- ``prometheus.io/port``: the port to scrape; without it, every TCP port the pod's containers declare
  is a target;
- ``prometheus.io/path``: the metrics path (default: the job's, ``/metrics``);
- ``prometheus.io/scheme``: ``http`` or ``https``;
- ``prometheus.io/param_<name>``: a URL parameter.

Each target carries the labels ``namespace``, ``pod``, ``container`` (when known) and ``node``, plus
the pod's labels (all, some or none), sanitized to label names as Prometheus' ``labelmap`` does.

Per namespace (or once for all), the pods are listed, in pages, then watched from the list's
resourceVersion, as client-go's reflector does. A watch that ends (the server's timeout) or breaks
resumes from the last resourceVersion seen (events and bookmarks), after a backoff if it broke; when
that version has expired (HTTP 410 Gone, or an ERROR event with code 410) the pods are listed again.
The Kubernetes client (kubernetes_asyncio) supplies connection settings and credentials: an explicit
``api_server``, a kubeconfig, or the in-cluster service account, whose token it re-reads as kubelet
rotates it. Responses are read raw with orjson: pod lists are large, model objects are not needed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config
from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector import __version__
from collector.config.types import ClientTLS, ReadableFile
from collector.core.tasks import cancel_and_wait
from collector.discovery import TargetSpec, join_host_port, sanitize_label_name

SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"
SCHEME_ANNOTATION = "prometheus.io/scheme"
PARAM_ANNOTATION_PREFIX = "prometheus.io/param_"

# client-go's reflector lists in pages of 500 and asks watches to end after 5-10 minutes, so that
# the load of re-established watches spreads out.
LIST_PAGE_SIZE = 500
WATCH_TIMEOUT_RANGE = (300, 600)
LIST_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
# A watch that has been silent this much longer than the timeout it asked for is dead.
WATCH_READ_GRACE = 60.0
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
# The service account token kubelet mounts is rotated; an explicit token file is re-read this often.
TOKEN_REREAD_INTERVAL = 60.0

IN_CLUSTER_HOST_ENV = "KUBERNETES_SERVICE_HOST"

PodLabels = Literal["all", "none"] | list[str]


class PodDiscoveryConfig(BaseModel):
    """Which API server to ask, and which pods."""

    model_config = ConfigDict(extra="forbid")

    # An explicit API server URL (https://host:6443). Unset: the kubeconfig if ``kubeconfig`` is set,
    # else the in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config.
    api_server: str | None = None
    api_tls: ClientTLS | None = None
    # A bearer token for ``api_server``, re-read every minute (so a rotated token is picked up).
    api_bearer_token_file: ReadableFile | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    # Empty: every namespace (one list/watch); else one list/watch per namespace.
    namespaces: list[str] = Field(default_factory=list)
    label_selector: str | None = None
    field_selector: str | None = None
    # Pod labels copied to target labels: "all", "none", or a list of label keys.
    pod_labels: PodLabels = "all"

    @field_validator("api_server")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("namespaces")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any(not ns for ns in value):
            raise ValueError("a namespace name cannot be empty")
        if len(set(value)) != len(value):
            raise ValueError("namespaces are listed twice")
        return value


class DiscoveryError(Exception):
    """Discovery cannot start: no way to reach an API server was configured or found."""


# ---------------------------------------------------------------------------------------------
# Pods -> targets


def pod_targets(pod: Mapping[str, Any], pod_labels: PodLabels = "all") -> tuple[tuple[TargetSpec, ...], str]:
    """The targets a pod stands for, and a problem (``""`` if none) when its annotations ask for
    scraping but cannot be followed."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(SCRAPE_ANNOTATION, "")).strip().lower() != "true":
        return (), ""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip:
        return (), ""
    spec = pod.get("spec") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    scheme = None
    if annotations.get(SCHEME_ANNOTATION):
        scheme = str(annotations[SCHEME_ANNOTATION]).strip().lower()
        if scheme not in ("http", "https"):
            return (), f"{SCHEME_ANNOTATION} {scheme!r} is not http or https"
    path = None
    if annotations.get(PATH_ANNOTATION):
        path = str(annotations[PATH_ANNOTATION]).strip()
        if not path.startswith("/"):
            path = "/" + path
    params = tuple(
        sorted(
            (key[len(PARAM_ANNOTATION_PREFIX) :], str(value))
            for key, value in annotations.items()
            if key.startswith(PARAM_ANNOTATION_PREFIX) and len(key) > len(PARAM_ANNOTATION_PREFIX)
        )
    )
    declared = _declared_ports(spec)
    ports: list[tuple[int, str]]
    if annotations.get(PORT_ANNOTATION):
        text = str(annotations[PORT_ANNOTATION]).strip()
        if not text.isdigit() or not 0 < int(text) < 65536:
            return (), f"{PORT_ANNOTATION} {text!r} is not a port number"
        port = int(text)
        ports = [(port, next((c for p, c in declared if p == port), ""))]
    else:
        ports = declared
        if not ports:
            return (), f"no {PORT_ANNOTATION} annotation and no container declares a TCP port"
    labels = _copied_labels(meta.get("labels") or {}, pod_labels)
    labels["namespace"] = namespace
    labels["pod"] = name
    node = str(spec.get("nodeName") or "")
    if node:
        labels["node"] = node
    resource = {"k8s.namespace.name": namespace, "k8s.pod.name": name}
    if meta.get("uid"):
        resource["k8s.pod.uid"] = str(meta["uid"])
    if node:
        resource["k8s.node.name"] = node
    targets = []
    for port, container in ports:
        target_labels = dict(labels)
        target_resource = dict(resource)
        if container:
            target_labels["container"] = container
            target_resource["k8s.container.name"] = container
        targets.append(
            TargetSpec(
                address=join_host_port(str(ip), port),
                labels=tuple(sorted(target_labels.items())),
                scheme=scheme,
                metrics_path=path,
                params=params,
                resource=tuple(sorted(target_resource.items())),
            )
        )
    return tuple(targets), ""


def _declared_ports(spec: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(port, container name) of every TCP port the pod's containers declare, each port once."""
    seen: dict[int, str] = {}
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if port.get("protocol", "TCP") != "TCP" or not isinstance(number, int) or number in seen:
                continue
            if 0 < number < 65536:
                seen[number] = str(container.get("name") or "")
    return list(seen.items())


def _copied_labels(pod_labels: Mapping[str, Any], which: PodLabels) -> dict[str, str]:
    if which == "none" or not pod_labels:
        return {}
    keys = sorted(pod_labels) if which == "all" else [key for key in which if key in pod_labels]
    copied: dict[str, str] = {}
    for key in keys:
        # Two keys may sanitize alike (a.b and a_b): the first in sorted order wins, every time.
        copied.setdefault(sanitize_label_name(key), str(pod_labels[key]))
    return copied


# ---------------------------------------------------------------------------------------------
# The API client


async def api_client(config: PodDiscoveryConfig) -> ApiClient:
    """A Kubernetes API client from the configured (or found) connection settings."""
    configuration = Configuration()
    try:
        if config.api_server:
            configuration.host = config.api_server
            tls = config.api_tls
            if tls is not None:
                configuration.ssl_ca_cert = tls.ca_file
                configuration.cert_file = tls.cert_file
                configuration.key_file = tls.key_file
                configuration.verify_ssl = not tls.insecure_skip_verify
                configuration.tls_server_name = tls.server_name
            if config.api_bearer_token_file:
                _use_token_file(configuration, config.api_bearer_token_file)
        elif config.kubeconfig:
            await load_kube_config(
                config_file=config.kubeconfig, context=config.kube_context, client_configuration=configuration
            )
        elif os.environ.get(IN_CLUSTER_HOST_ENV):
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            path = _default_kubeconfig()
            await load_kube_config(
                config_file=path, context=config.kube_context, client_configuration=configuration
            )
    except ConfigException as exc:
        raise DiscoveryError(f"cannot load the Kubernetes client configuration: {exc}") from None
    client = ApiClient(configuration)
    client.user_agent = f"burnline/{__version__}"
    return client


def _default_kubeconfig() -> str:
    path = os.path.expanduser(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config")
    if not Path(path).is_file():
        raise DiscoveryError(
            "no Kubernetes API server: set api_server or kubeconfig, or run in a pod "
            f"(with a service account), or provide {path}"
        )
    return path


def _use_token_file(configuration: Configuration, path: str) -> None:
    next_read = 0.0

    def refresh(conf: Configuration) -> None:
        nonlocal next_read
        now = time.monotonic()
        if now < next_read:
            return
        next_read = now + TOKEN_REREAD_INTERVAL
        try:
            token = Path(path).read_text().strip()
        except OSError:
            return  # keep the last token; the API answers 401 if it is really gone
        if token:
            conf.api_key["BearerToken"] = f"Bearer {token}"

    refresh(configuration)
    configuration.refresh_api_key_hook = refresh


# ---------------------------------------------------------------------------------------------
# List + watch


class _Expired(Exception):
    """The resourceVersion is too old (410 Gone): list again."""


class _APIError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


async def _status_detail(response: aiohttp.ClientResponse) -> str:
    """The message of the Status object the API server answers errors with."""
    try:
        body = await response.read()
        status = orjson.loads(body)
        if isinstance(status, dict) and status.get("message"):
            return f"HTTP {response.status}: {status['message']}"
    except (aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError):
        pass
    return f"HTTP {response.status} {response.reason or ''}".rstrip()


class _PodWatch:
    """The pods of one namespace (or all), kept current."""

    def __init__(self, owner: KubernetesPodDiscovery, namespace: str | None) -> None:
        self.owner = owner
        self.namespace = namespace
        self.where = f"namespace {namespace}" if namespace else "all namespaces"
        self.pods: dict[str, tuple[TargetSpec, ...]] = {}
        self.problems: dict[str, str] = {}
        self.resource_version: str | None = None
        self.failing = ""
        self.events = 0
        self.listed = False

    def _call(self, **kwargs: Any) -> Any:
        config = self.owner.config
        if config.label_selector:
            kwargs["label_selector"] = config.label_selector
        if config.field_selector:
            kwargs["field_selector"] = config.field_selector
        kwargs["_preload_content"] = False
        api = self.owner.core
        if self.namespace:
            return api.list_namespaced_pod(self.namespace, **kwargs)
        return api.list_pod_for_all_namespaces(**kwargs)

    async def run(self) -> None:
        delay = BACKOFF_INITIAL
        expired = 0  # expiries since events last flowed: a second one in a row backs off
        while True:
            events = self.events
            try:
                if self.resource_version is None:
                    await self._list()
                    self._recovered()
                await self._watch()
                delay = BACKOFF_INITIAL
                expired = 0
                continue  # the watch ended normally (its timeout): resume at once
            except _Expired as exc:
                self.owner.log.info(
                    "kubernetes pods (%s): resourceVersion %s expired (%s); listing again",
                    self.where,
                    self.resource_version,
                    exc,
                )
                self.resource_version = None
                expired = 1 if self.events != events else expired + 1
                if expired == 1:
                    continue
            except _APIError as exc:
                self._failed(exc.reason, exc.detail)
            except (aiohttp.ClientError, OSError) as exc:
                self._failed("connection", f"{type(exc).__name__}: {exc}")
            except TimeoutError:
                self._failed("timeout", "the API server did not answer in time")
            except ValueError as exc:  # aiohttp: a line (one event) longer than its buffer
                self._failed("bad_response", f"unreadable answer: {exc}")
            except Exception as exc:
                self.owner.log.exception("kubernetes pods (%s): unexpected failure", self.where)
                self._failed("internal", f"{type(exc).__name__}: {exc}")
            if self.events != events:
                delay = BACKOFF_INITIAL  # the watch worked for a while: this is a fresh failure
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    def _failed(self, reason: str, detail: str) -> None:
        self.owner.report_error(reason)
        if detail != self.failing:
            resume = (
                f"resuming from resourceVersion {self.resource_version}"
                if self.resource_version
                else "listing"
            )
            self.owner.log.warning(
                "kubernetes pods (%s): %s; retrying with backoff, %s", self.where, detail, resume
            )
        self.failing = detail

    def _recovered(self) -> None:
        if self.failing:
            self.owner.log.info("kubernetes pods (%s): the API server answers again", self.where)
            self.failing = ""

    async def _list(self) -> None:
        pods: dict[str, tuple[TargetSpec, ...]] = {}
        problems: dict[str, str] = {}
        token: str | None = None
        version = ""
        while True:
            kwargs: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
            if token:
                kwargs["_continue"] = token
            kwargs["_request_timeout"] = aiohttp.ClientTimeout(
                total=LIST_TIMEOUT, sock_connect=CONNECT_TIMEOUT
            )
            response: aiohttp.ClientResponse = await self._call(**kwargs)
            async with response:
                if response.status == 410:
                    raise _Expired(await _status_detail(response))
                if response.status != 200:
                    raise _APIError(f"http_{response.status}", await _status_detail(response))
                body = await response.read()
            try:
                page = orjson.loads(body)
                items = page.get("items") or []
                metadata = page.get("metadata") or {}
            except (orjson.JSONDecodeError, AttributeError):
                raise _APIError("bad_response", "the pod list is not a JSON PodList") from None
            for pod in items:
                key, targets, problem = self._targets(pod)
                if targets:
                    pods[key] = targets
                if problem:
                    problems[key] = problem
            version = str(metadata.get("resourceVersion") or "")
            token = metadata.get("continue") or None
            if not token:
                break
        if not version:
            raise _APIError("bad_response", "the pod list has no resourceVersion")
        self._log_problems(problems)
        self.problems = problems
        changed = pods != self.pods
        self.pods = pods
        self.resource_version = version
        self.owner.lists += 1
        self.owner.log.debug(
            "kubernetes pods (%s): listed at resourceVersion %s, %d targets",
            self.where,
            version,
            self.count(),
        )
        if changed or not self.listed:
            self.owner.changed()
        self.listed = True

    async def _watch(self) -> None:
        timeout = random.randint(*WATCH_TIMEOUT_RANGE)
        response: aiohttp.ClientResponse = await self._call(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT, sock_read=timeout + WATCH_READ_GRACE
            ),
        )
        async with response:
            if response.status == 410:
                raise _Expired(await _status_detail(response))
            if response.status != 200:
                raise _APIError(f"http_{response.status}", await _status_detail(response))
            self._recovered()
            self.owner.watches += 1
            while True:
                line = await response.content.readline()
                if not line:
                    return
                line = line.strip()
                if line:
                    self._event(line)

    def _event(self, line: bytes) -> None:
        try:
            event = orjson.loads(line)
            kind = event["type"]
            obj = event.get("object") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise _APIError("bad_response", f"a watch event is not JSON: {line[:100]!r}") from None
        self.events += 1
        if kind == "ERROR":
            code = obj.get("code")
            message = obj.get("message") or obj.get("reason") or "no message"
            if code == 410:
                raise _Expired(message)
            raise _APIError(f"watch_error_{code}", f"watch error {code}: {message}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            key, targets, problem = self._targets(obj)
            self._problem(key, problem)
            if targets:
                if self.pods.get(key) != targets:
                    self.pods[key] = targets
                    self.owner.changed()
            elif self.pods.pop(key, None) is not None:
                self.owner.changed()
        elif kind == "DELETED":
            key = self._key(obj)
            self.problems.pop(key, None)
            if self.pods.pop(key, None) is not None:
                self.owner.changed()
        elif kind != "BOOKMARK":
            self.owner.log.debug("kubernetes pods (%s): ignoring a %r event", self.where, kind)
        if version:
            self.resource_version = str(version)

    @staticmethod
    def _key(pod: Mapping[str, Any]) -> str:
        meta = pod.get("metadata") or {}
        return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")

    def _targets(self, pod: Mapping[str, Any]) -> tuple[str, tuple[TargetSpec, ...], str]:
        targets, problem = pod_targets(pod, self.owner.config.pod_labels)
        return self._key(pod), targets, problem

    def _problem(self, key: str, problem: str) -> None:
        if not problem:
            self.problems.pop(key, None)
        elif self.problems.get(key) != problem:
            self.problems[key] = problem
            self.owner.log.warning("kubernetes pods (%s): pod %s not scraped: %s", self.where, key, problem)

    def _log_problems(self, problems: dict[str, str]) -> None:
        fresh = {key: text for key, text in problems.items() if self.problems.get(key) != text}
        for key, text in list(fresh.items())[:10]:
            self.owner.log.warning("kubernetes pods (%s): pod %s not scraped: %s", self.where, key, text)
        if len(fresh) > 10:
            self.owner.log.warning(
                "kubernetes pods (%s): %d more pods not scraped", self.where, len(fresh) - 10
            )

    def count(self) -> int:
        return sum(len(targets) for targets in self.pods.values())


class KubernetesPodDiscovery:
    """Discovers annotated pods; ``updates()`` yields the whole target set after each change."""

    def __init__(
        self,
        config: PodDiscoveryConfig,
        log: logging.Logger,
        on_error: Callable[[str], None] | None = None,
        coalesce: float = 0.5,
    ) -> None:
        self.config = config
        self.log = log
        self._on_error = on_error
        # Changes this close together are reported as one (pods of a rollout come and go in bursts).
        self._coalesce = coalesce
        self._changed = asyncio.Event()
        namespaces: list[str | None] = list(config.namespaces) or [None]
        self._watches = [_PodWatch(self, ns) for ns in namespaces]
        self._tasks: list[asyncio.Task[None]] = []
        self._client: ApiClient | None = None
        self.core: Any = None
        # How many lists and established watches so far (all namespaces): for tests and debugging.
        self.lists = 0
        self.watches = 0

    async def start(self) -> None:
        self._client = await api_client(self.config)
        self.core = CoreV1Api(self._client)
        for watch in self._watches:
            self._tasks.append(asyncio.create_task(watch.run(), name=f"k8s-pods-{watch.where}"))
        where = ", ".join(w.where for w in self._watches)
        self.log.info("discovering annotated pods in %s from %s", where, self._client.configuration.host)

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks, self.log)
        if self._client is not None:
            await self._client.close()
            self._client = None

    def report_error(self, reason: str) -> None:
        if self._on_error is not None:
            self._on_error(reason)

    def changed(self) -> None:
        self._changed.set()

    def targets(self) -> list[TargetSpec]:
        found: dict[TargetSpec, None] = {}
        for watch in self._watches:
            for targets in watch.pods.values():
                found.update(dict.fromkeys(targets))
        return list(found)

    async def updates(self) -> AsyncIterator[list[TargetSpec]]:
        while True:
            await self._changed.wait()
            if self._coalesce > 0:
                await asyncio.sleep(self._coalesce)
            self._changed.clear()
            yield self.targets()
