"""List + watch: the pods of one namespace (or all), kept current.

Per namespace (or once for all), the pods are listed, in pages, then watched from the list's
resourceVersion, as client-go's reflector does. A watch that ends (the server's timeout) or breaks
resumes from the last resourceVersion seen (events and bookmarks), after a backoff if it broke; when
that version has expired (HTTP 410 Gone, or an ERROR event with code 410) the pods are listed again.
Responses are read raw with orjson: pod lists are large, model objects are not needed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from collector.discovery import TargetSpec
from collector.discovery.pod_targets import pod_targets

if TYPE_CHECKING:
    from collector.discovery.kubernetes import KubernetesPodDiscovery

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


class PodWatch:
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
