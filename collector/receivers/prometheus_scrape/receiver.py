"""The ``prometheus_scrape`` receiver: scrapes Prometheus endpoints, as a Prometheus server does.

Targets come from static ``jobs`` (``static_configs``) and from Kubernetes pods annotated
``prometheus.io/scrape: "true"`` (collector/discovery/kubernetes.py). Each target is scraped every
``scrape_interval`` at a fixed phase derived from a hash of the target, so that targets spread over
the interval instead of being hit at once (Prometheus does the same); at most
``max_concurrent_scrapes`` requests are in flight.

A scrape is one HTTP GET with the headers Prometheus sends (Accept preferring OpenMetrics, gzip,
``X-Prometheus-Scrape-Timeout-Seconds``), bounded by ``scrape_timeout``, its (inflated) body cut off
at ``body_size_limit`` while it streams. The body is parsed by prometheus-client's parsers
(collector/normalize/prometheus.py) into MetricPoints carrying the target's labels: ``job`` and
``instance`` as the resource's ``service.name`` and ``service.instance.id`` (as the OpenTelemetry
Collector's Prometheus receiver does; with ``server.address``, ``server.port``, ``url.scheme`` and,
for pods, ``k8s.*``), the others (static ``labels``; for pods ``namespace``, ``pod``, ``container``,
``node`` and pod labels) as attributes. With them go the series Prometheus itself adds per target:
``up``, ``scrape_duration_seconds``, ``scrape_samples_scraped``,
``scrape_samples_post_metric_relabeling`` and ``scrape_series_added``. One scrape is one batch.

A series that was in the previous scrape but not in this one, or every series of a target whose scrape
failed or that went away, gets a staleness marker: a point flagged NO_RECORDED_VALUE (OTLP's flag;
Prometheus writes a stale NaN there), so that it ends at once instead of fading after 5 minutes.

A failed scrape (timeout, refused connection, HTTP error, garbage, too large, too many samples) only
affects its own target: ``up`` is 0, the reason is counted in ``burnline_receiver_errors_total`` and
logged once per change of state, not per scrape. When the pipeline refuses a scrape (backpressure),
its samples are dropped: the next scrape brings current values (counters lose nothing).

Configuration (Prometheus' scrape_config names where there is one)::

    prometheus_scrape:
      scrape_interval: 15s            # defaults for the jobs below
      max_concurrent_scrapes: 64
      jobs:
        - job_name: node
          static_configs:
            - targets: [10.0.0.1:9100, 10.0.0.2:9100]
              labels: {env: prod}
          scrape_timeout: 5s
          body_size_limit: 16MiB      # 0: no limit
          sample_limit: 50000         # 0: no limit
          bearer_token_file: /var/run/secrets/token
      kubernetes_pods:                # or just ``kubernetes_pods: true``
        namespaces: [shop, payments]  # empty: all
        label_selector: team=web
        pod_labels: [app.kubernetes.io/name]   # or "all" (default) or "none"
        scrape_interval: 30s
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import math
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from yarl import URL

from collector import __version__
from collector.config.types import ByteSize, ClientTLS, Duration, Endpoint, ReadableFile, split_endpoint
from collector.core.component import ComponentConfig, ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, MetricKind, MetricPoint, Scope, Signal, Temporality
from collector.discovery import TargetSource, TargetSpec
from collector.discovery.kubernetes import KubernetesPodDiscovery, PodDiscoveryConfig
from collector.normalize.prometheus import Exposition, ExpositionError, is_openmetrics, parse_exposition

MiB = 1024 * 1024

# What Prometheus 2.x sends: OpenMetrics preferred, the 0.0.4 text format accepted.
ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
USER_AGENT = f"burnline/{__version__}"
DEFAULT_SCRAPE_TIMEOUT = 10.0
# OTLP DataPointFlags.FLAG_NO_RECORDED_VALUE: the series ended (Prometheus' staleness marker).
NO_RECORDED_VALUE = 1
SCOPE = Scope(name="burnline/prometheus_scrape", version=__version__)
# The series Prometheus adds for every target, with what they say.
SYNTHETIC_HELP = {
    "up": "1 if the last scrape of the target succeeded, 0 if it failed.",
    "scrape_duration_seconds": "How long the last scrape of the target took.",
    "scrape_samples_scraped": "Samples the target exposed in the last scrape.",
    "scrape_samples_post_metric_relabeling": "Samples of the last scrape that were kept.",
    "scrape_series_added": "Series in the last scrape that were not in the one before.",
}
SYNTHETIC = tuple(SYNTHETIC_HELP)

_READ_CHUNK = 64 * 1024
# Bodies at least this big are parsed in a worker thread, so that a large target (kube-state-metrics)
# does not stall every other scrape for the whole parse.
_THREAD_PARSE_BYTES = 256 * 1024
# A repeated problem (pipeline refusals) is logged at most once per this many seconds.
_LOG_INTERVAL = 10.0
_TOKEN_REREAD_INTERVAL = 60.0
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# Configuration


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        return self


class ScrapeSettings(BaseModel):
    """How the targets of one job are scraped (Prometheus' scrape_config settings)."""

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["http", "https"] = "http"
    metrics_path: str = "/metrics"
    # URL parameters, e.g. {module: [if_mib]} for the SNMP exporter.
    params: dict[str, list[str]] = Field(default_factory=dict)
    # Unset: the receiver's scrape_interval / scrape_timeout (a timeout never longer than the interval).
    scrape_interval: Duration | None = None
    scrape_timeout: Duration | None = None
    # On a label conflict keep the exposed label (true) or the target's, the exposed one renamed
    # ``exported_<name>`` (false, Prometheus' default).
    honor_labels: bool = False
    # Use the timestamps the target exposes (Prometheus' default) or the scrape time.
    honor_timestamps: bool = True
    # A larger (uncompressed) body fails the scrape; read no further. 0: no limit (Prometheus' default,
    # not ours: one runaway target must not take the collector's memory).
    body_size_limit: ByteSize = 16 * MiB
    # More samples than this fails the scrape, as in Prometheus. 0: no limit.
    sample_limit: int = Field(0, ge=0)
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: ReadableFile | None = None
    tls: ClientTLS | None = None
    follow_redirects: bool = True

    @field_validator("params", mode="before")
    @classmethod
    def _param_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str | int | float) else v for k, v in value.items()}
        return value

    @field_validator("metrics_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"metrics_path {value!r} must start with /")
        return value

    @field_validator("scrape_interval", "scrape_timeout")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> ScrapeSettings:
        chosen = [
            self.basic_auth is not None,
            self.bearer_token is not None,
            self.bearer_token_file is not None,
        ]
        if sum(chosen) > 1:
            raise ValueError("set at most one of basic_auth, bearer_token and bearer_token_file")
        return self


class StaticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[Endpoint] = Field(min_length=1)
    # Labels for every series of these targets (they may also set ``instance`` or ``job``).
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(
                    f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                )
        return value


class ScrapeJob(ScrapeSettings):
    job_name: str = Field(min_length=1)
    static_configs: list[StaticConfig] = Field(min_length=1)


class KubernetesPodsConfig(ScrapeSettings, PodDiscoveryConfig):
    """Pods annotated ``prometheus.io/scrape: "true"``: where to find them and how to scrape them."""

    enabled: bool = True
    job_name: str = Field("kubernetes-pods", min_length=1)


class PrometheusScrapeConfig(ComponentConfig):
    # Defaults for every job that does not set its own (Prometheus' ``global`` section).
    scrape_interval: Duration = 15.0
    # Unset: 10s, or the interval if that is shorter (as Prometheus defaults it).
    scrape_timeout: Duration | None = None
    max_concurrent_scrapes: int = Field(64, ge=1)
    jobs: list[ScrapeJob] = Field(default_factory=list)
    # ``true`` is short for ``{enabled: true}`` with every default.
    kubernetes_pods: KubernetesPodsConfig | None = None

    @field_validator("kubernetes_pods", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @model_validator(mode="after")
    def _check(self) -> PrometheusScrapeConfig:
        if self.scrape_interval <= 0:
            raise ValueError("scrape_interval must be longer than 0s")
        if self.scrape_timeout is not None and not 0 < self.scrape_timeout <= self.scrape_interval:
            raise ValueError("scrape_timeout must be longer than 0s and not longer than scrape_interval")
        names = [job.job_name for job in self.jobs]
        if self.kubernetes_pods is not None and self.kubernetes_pods.enabled:
            names.append(self.kubernetes_pods.job_name)
        if not names:
            raise ValueError("nothing to scrape: add jobs, or enable kubernetes_pods")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"job names must be unique: {', '.join(duplicates)} appear more than once")
        for job in self.scraped_jobs():
            interval, timeout = self.timing(job)
            if timeout > interval:
                raise ValueError(
                    f"job {job.job_name!r}: scrape_timeout {timeout:g}s is longer than "
                    f"scrape_interval {interval:g}s"
                )
        return self

    def scraped_jobs(self) -> list[ScrapeJob | KubernetesPodsConfig]:
        jobs: list[ScrapeJob | KubernetesPodsConfig] = list(self.jobs)
        if self.kubernetes_pods is not None and self.kubernetes_pods.enabled:
            jobs.append(self.kubernetes_pods)
        return jobs

    def timing(self, job: ScrapeSettings) -> tuple[float, float]:
        """(interval, timeout) of a job; an inherited timeout shrinks to a shorter job interval."""
        interval = job.scrape_interval if job.scrape_interval is not None else self.scrape_interval
        if job.scrape_timeout is not None:
            return interval, job.scrape_timeout
        default = self.scrape_timeout if self.scrape_timeout is not None else DEFAULT_SCRAPE_TIMEOUT
        return interval, min(default, interval)


# ---------------------------------------------------------------------------------------------
# Jobs and targets at run time


class ScrapeFailed(Exception):
    """A scrape that produced no samples: ``reason`` labels the counter, ``detail`` goes to the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Job:
    """A job's settings, resolved once: timing, TLS context, credentials, request headers."""

    def __init__(self, name: str, settings: ScrapeSettings, interval: float, timeout: float) -> None:
        self.name = name
        self.settings = settings
        self.interval = interval
        self.timeout = timeout
        self.ssl: Any = settings.tls.context() if settings.tls else True
        self.server_name = settings.tls.server_name if settings.tls else None
        self.headers = {
            "Accept": ACCEPT,
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
            "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}",
        }
        if settings.bearer_token is not None:
            self.headers["Authorization"] = f"Bearer {settings.bearer_token.get_secret_value()}"
        elif settings.basic_auth is not None and settings.basic_auth.password_file is None:
            password = settings.basic_auth.password
            self.headers["Authorization"] = _basic(
                settings.basic_auth.username, password.get_secret_value() if password else ""
            )
        # Secrets in files (rotated by whoever mounts them) are re-read this often.
        self._secret_read_at = -math.inf

    def request_headers(self) -> dict[str, str]:
        settings = self.settings
        secret_file = settings.bearer_token_file or (
            settings.basic_auth and settings.basic_auth.password_file
        )
        now = time.monotonic()
        if secret_file and now - self._secret_read_at >= _TOKEN_REREAD_INTERVAL:
            self._secret_read_at = now
            secret = _read_secret(secret_file)
            if secret is not None and settings.bearer_token_file:
                self.headers["Authorization"] = f"Bearer {secret}"
            elif secret is not None and settings.basic_auth is not None:
                self.headers["Authorization"] = _basic(settings.basic_auth.username, secret)
        return self.headers


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _read_secret(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


@dataclass(slots=True)
class _Series:
    """What a staleness marker of a series needs besides its name and attributes."""

    kind: MetricKind
    monotonic: bool
    temporality: int
    resource: dict[str, Any]
    # Series exposed with their own timestamps get no markers, as in Prometheus: their source, not
    # the scrape, says when they were valid.
    marked: bool = True


# Name, attributes and the resource's (service.name, service.instance.id): with honor_labels one
# target may expose series of several jobs and instances.
SeriesKey = tuple[str, frozenset[tuple[str, str]], str, str]


def series_key(point: MetricPoint) -> SeriesKey:
    resource = point.resource
    return (
        point.name,
        frozenset(point.attributes.items()),
        resource.get("service.name", ""),
        resource.get("service.instance.id", ""),
    )


@dataclass(eq=False)
class _Target:
    job: _Job
    spec: TargetSpec
    url: URL
    labels: dict[str, str]  # every target label, job and instance included
    resource: dict[str, Any]
    key: tuple[str, str, tuple[tuple[str, str], ...]]
    # The target labels points carry as attributes: job and instance are in the resource.
    attributes: dict[str, str] = field(default_factory=dict)
    # "" before the first scrape, "up" while scrapes succeed, else the reason of the last failure.
    health: str = ""
    problem: str = ""  # the last invalid-series problem logged
    # The series of the last scrape the pipeline took, for staleness markers and series_added.
    series: dict[SeriesKey, _Series] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def first_delay(self, now: float) -> float:
        """Seconds until this target's phase in the interval: a stable hash of the target, so that
        every restart scrapes it at the same offset and targets spread evenly (as Prometheus does)."""
        digest = hashlib.blake2b(repr(self.key).encode(), digest_size=8).digest()
        phase = int.from_bytes(digest, "big") / 2**64 * self.job.interval
        return (phase - now) % self.job.interval

    def describe(self) -> str:
        return f"{self.url} (job {self.job.name})"


@dataclass(slots=True)
class _Outcome:
    """A parsed scrape: its points (staleness markers included) and the series it has."""

    points: list[MetricPoint]
    series: dict[SeriesKey, _Series]
    exposition: Exposition


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The response body, inflated if gzip/deflate, failing as soon as it passes ``limit`` bytes
    (0: no limit) without reading the rest."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    inflater = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or zlib header, detected
    elif encoding not in ("", "identity"):
        raise ScrapeFailed("unsupported_encoding", f"the body has Content-Encoding {encoding!r}")
    too_large = ScrapeFailed("body_size_limit", f"the body is larger than the {limit}-byte body_size_limit")
    declared = response.content_length
    if limit and inflater is None and declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            if inflater is None:
                body += chunk
            else:
                data = chunk
                while data:
                    # One byte past the limit tells "exactly at the limit" from "over it".
                    body += inflater.decompress(data, limit - len(body) + 1 if limit else 0)
                    if limit and len(body) > limit:
                        break
                    data = inflater.unconsumed_tail
            if limit and len(body) > limit:
                raise too_large
    except zlib.error as exc:
        raise ScrapeFailed("bad_encoding", f"invalid {encoding} data: {exc}") from None
    if inflater is not None and not inflater.eof:
        raise ScrapeFailed("bad_encoding", f"the {encoding} body is truncated")
    return bytes(body)


def _connection_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED:
        return "connection_refused"
    return "connection_failed"


def _stale_point(key: SeriesKey, series: _Series, time_ns: int) -> MetricPoint:
    point = MetricPoint(
        name=key[0],
        kind=series.kind,
        time_unix_nano=time_ns,
        attributes=dict(key[1]),
        temporality=series.temporality,
        monotonic=series.monotonic,
        flags=NO_RECORDED_VALUE,
        resource=series.resource,
        scope=SCOPE,
    )
    if series.kind in (MetricKind.GAUGE, MetricKind.SUM):
        point.value = math.nan
    return point


class _RateLimitedLog:
    def __init__(self) -> None:
        self.last = -math.inf
        self.quiet = 0

    def due(self) -> tuple[bool, int]:
        """Whether to log now, and how many occurrences were not logged since the last line."""
        now = time.monotonic()
        if now - self.last < _LOG_INTERVAL:
            self.quiet += 1
            return False, 0
        self.last = now
        quiet, self.quiet = self.quiet, 0
        return True, quiet


# ---------------------------------------------------------------------------------------------


@register
class PrometheusScrapeReceiver(Receiver):
    """Scrapes static and Kubernetes-discovered Prometheus targets into metric points."""

    type_name = "prometheus_scrape"
    config_model = PrometheusScrapeConfig
    signals = frozenset({Signal.METRICS})

    config: PrometheusScrapeConfig

    def __init__(
        self, config: PrometheusScrapeConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]
    ) -> None:
        super().__init__(config, ctx, consumers)
        self.jobs: dict[str, _Job] = {}
        for job in config.scraped_jobs():
            interval, timeout = config.timing(job)
            self.jobs[job.job_name] = _Job(job.job_name, job, interval, timeout)
        # The running targets of each job, by target key.
        self.targets: dict[str, dict[tuple[str, str, tuple[tuple[str, str], ...]], _Target]] = {
            name: {} for name in self.jobs
        }
        self.discovery: KubernetesPodDiscovery | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(config.max_concurrent_scrapes)
        self._tasks: list[asyncio.Task[None]] = []
        self._refusals = _RateLimitedLog()
        self._running = False

    async def start(self) -> None:
        longest = max(job.interval for job in self.jobs.values())
        connector = aiohttp.TCPConnector(
            limit=self.config.max_concurrent_scrapes,
            # Keep each target's connection from one scrape to the next, as Prometheus does.
            keepalive_timeout=min(2 * longest + 5, 300.0),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # inflated here, bounded by body_size_limit
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._running = True
        try:
            for job_config in self.config.jobs:
                specs = [
                    TargetSpec(address=address, labels=tuple(sorted(static.labels.items())))
                    for static in job_config.static_configs
                    for address in static.targets
                ]
                await self.apply(job_config.job_name, specs)
            pods = self.config.kubernetes_pods
            if pods is not None and pods.enabled:
                self.discovery = KubernetesPodDiscovery(pods, self.log, on_error=self._discovery_error)
                await self.discovery.start()
                self._tasks.append(asyncio.create_task(self._follow(self.discovery, pods.job_name)))
        except BaseException:
            await self.stop()
            raise
        static = sum(len(targets) for targets in self.targets.values())
        self.log.info(
            "scraping %d static target(s) in %d job(s)%s",
            static,
            len(self.config.jobs),
            "; discovering Kubernetes pods" if self.discovery else "",
        )

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.discovery is not None:
            await self.discovery.stop()
            self.discovery = None
        running = [t.task for targets in self.targets.values() for t in targets.values() if t.task]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for targets in self.targets.values():
            targets.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def ready(self) -> bool:
        return self._running

    def _discovery_error(self, reason: str) -> None:
        self.ctx.telemetry.protocol_errors.labels(self.id, f"discovery_{reason}").inc()

    async def _follow(self, discovery: TargetSource, job_name: str) -> None:
        async for specs in discovery.updates():
            try:
                await self.apply(job_name, specs)
            except Exception:
                self.log.exception("failed to apply discovered targets of job %s", job_name)

    # -- target sets

    async def apply(self, job_name: str, specs: Iterable[TargetSpec]) -> None:
        """Makes ``specs`` the targets of a job: new ones start, vanished ones stop (their series get
        staleness markers), unchanged ones keep their schedule."""
        job = self.jobs[job_name]
        current = self.targets[job_name]
        desired: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Target] = {}
        for spec in specs:
            target = self._target(job, spec)
            desired.setdefault(target.key, target)
        gone = [current.pop(key) for key in list(current) if key not in desired]
        new = [target for key, target in desired.items() if key not in current]
        for target in new:
            current[target.key] = target
            target.task = asyncio.create_task(self._run(target), name=f"scrape {target.url}")
        if gone or new:
            self.log.info(
                "job %s: %d target(s) (%d new, %d gone)", job_name, len(current), len(new), len(gone)
            )
        for target in gone:
            await self._retire(target)

    def _target(self, job: _Job, spec: TargetSpec) -> _Target:
        settings = job.settings
        host, port = split_endpoint(spec.address)
        scheme = spec.scheme or settings.scheme
        query: list[tuple[str, str]] = []
        overridden = {name for name, _ in spec.params}
        for name, values in settings.params.items():
            if name not in overridden:
                query.extend((name, value) for value in values)
        query.extend(spec.params)
        url = URL.build(
            scheme=scheme, host=host, port=port, path=spec.metrics_path or settings.metrics_path, query=query
        )
        labels = {"job": job.name, "instance": spec.address}
        labels.update(spec.labels)
        resource: dict[str, Any] = {
            "service.name": labels["job"],
            "service.instance.id": labels["instance"],
            "server.address": host,
            "server.port": port,
            "url.scheme": scheme,
        }
        resource.update(spec.resource)
        key = (job.name, str(url), tuple(sorted(labels.items())))
        attributes = {k: v for k, v in labels.items() if k not in ("job", "instance")}
        return _Target(
            job=job, spec=spec, url=url, labels=labels, resource=resource, key=key, attributes=attributes
        )

    async def _retire(self, target: _Target) -> None:
        if target.task is not None:
            target.task.cancel()
            await asyncio.gather(target.task, return_exceptions=True)
        now = time.time_ns()
        points = [_stale_point(key, s, now) for key, s in target.series.items() if s.marked]
        if target.health:  # scraped at least once: its up, scrape_duration_seconds, ... end too
            attributes = frozenset(target.attributes.items())
            job, instance = target.labels["job"], target.labels["instance"]
            gauge = _Series(MetricKind.GAUGE, False, Temporality.UNSPECIFIED, target.resource)
            points.extend(_stale_point((name, attributes, job, instance), gauge, now) for name in SYNTHETIC)
        target.series = {}
        await self._deliver(target, points, 0)

    # -- scraping

    async def _run(self, target: _Target) -> None:
        loop = asyncio.get_running_loop()
        interval = target.job.interval
        await asyncio.sleep(target.first_delay(time.time()))
        next_at = loop.time()
        while True:
            try:
                await self.scrape(target)
            except Exception:
                self.log.exception("scraping %s failed unexpectedly", target.describe())
            next_at += interval
            now = loop.time()
            if next_at <= now:
                # Behind schedule (a slow pipeline, or all scrape slots busy): skip the missed ticks
                # rather than scrape in a burst.
                next_at += math.floor((now - next_at) / interval + 1) * interval
            await asyncio.sleep(next_at - now)

    async def scrape(self, target: _Target) -> None:
        """One scrape of one target, delivered as one batch."""
        async with self._slots:
            scrape_ns = time.time_ns()
            started = time.perf_counter()
            body = b""
            try:
                body, content_type = await self._fetch(target)
                fetched = True
            except ScrapeFailed as exc:
                failure = exc
                fetched = False
            duration = time.perf_counter() - started
        if fetched:
            try:
                if len(body) >= _THREAD_PARSE_BYTES:
                    outcome = await asyncio.to_thread(self._process, target, body, content_type, scrape_ns)
                else:
                    outcome = self._process(target, body, content_type, scrape_ns)
            except ScrapeFailed as exc:
                failure = exc
            else:
                exposition = outcome.exposition
                self._up(target, exposition)
                added = sum(1 for key in outcome.series if key not in target.series)
                counts = (exposition.samples, exposition.samples - exposition.invalid, added)
                points = outcome.points
                points.extend(self._synthetic(target, scrape_ns, 1, duration, counts))
                if await self._deliver(target, points, len(body)):
                    target.series = outcome.series
                return
        self._down(target, failure)
        # Every series of the last good scrape ends now.
        points = [_stale_point(key, s, scrape_ns) for key, s in target.series.items() if s.marked]
        points.extend(self._synthetic(target, scrape_ns, 0, duration, (0, 0, 0)))
        if await self._deliver(target, points, len(body)):
            target.series = {}

    async def _fetch(self, target: _Target) -> tuple[bytes, str]:
        assert self._session is not None
        job = target.job
        headers = job.request_headers()
        kwargs: dict[str, Any] = {}
        if job.server_name:
            kwargs["server_hostname"] = job.server_name
        try:
            async with asyncio.timeout(job.timeout):
                async with self._session.get(
                    target.url,
                    headers=headers,
                    ssl=job.ssl,
                    allow_redirects=job.settings.follow_redirects,
                    **kwargs,
                ) as response:
                    if response.status != 200:
                        raise ScrapeFailed(
                            f"http_{response.status}",
                            f"HTTP {response.status} {response.reason or ''}".rstrip(),
                        )
                    try:
                        body = await read_body(response, job.settings.body_size_limit)
                    except ScrapeFailed:
                        response.close()  # do not read (or keep) the rest of a body we gave up on
                        raise
                    return body, response.headers.get("Content-Type", "")
        except TimeoutError:
            raise ScrapeFailed(
                "timeout", f"no complete answer within the {job.timeout:g}s scrape_timeout"
            ) from None
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise ScrapeFailed("tls", f"TLS failed: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise ScrapeFailed(_connection_reason(exc), f"cannot connect: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise ScrapeFailed("http_error", f"{type(exc).__name__}: {exc}") from None

    def _process(self, target: _Target, body: bytes, content_type: str, scrape_ns: int) -> _Outcome:
        """Parses a body into points plus staleness markers for the series it no longer has (runs in a
        worker thread for large bodies: touches nothing but its own target)."""
        job = target.job
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScrapeFailed("bad_encoding", f"the body is not UTF-8 (byte {exc.start})") from None
        try:
            exposition = parse_exposition(
                text,
                openmetrics=is_openmetrics(content_type),
                scrape_time_ns=scrape_ns,
                target_labels=target.labels,
                honor_labels=job.settings.honor_labels,
                honor_timestamps=job.settings.honor_timestamps,
                resource=target.resource,
                scope=SCOPE,
            )
        except ExpositionError as exc:
            raise ScrapeFailed("invalid_exposition", str(exc)) from None
        limit = job.settings.sample_limit
        if limit and exposition.samples > limit:
            raise ScrapeFailed(
                "sample_limit", f"{exposition.samples} samples exceed the sample_limit of {limit}"
            )
        series: dict[SeriesKey, _Series] = {}
        for point in exposition.points:
            marked = point.time_unix_nano == scrape_ns
            series[series_key(point)] = _Series(
                point.kind, point.monotonic, point.temporality, point.resource, marked
            )
        points = exposition.points
        for key, old in target.series.items():
            if old.marked and key not in series:
                points.append(_stale_point(key, old, scrape_ns))
        return _Outcome(points, series, exposition)

    def _synthetic(
        self, target: _Target, time_ns: int, up: int, duration: float, counts: tuple[int, int, int]
    ) -> list[MetricPoint]:
        """``up``, the duration and (samples scraped, samples kept, series added)."""
        values = (up, duration, *counts)
        return [
            MetricPoint(
                name=name,
                kind=MetricKind.GAUGE,
                time_unix_nano=time_ns,
                attributes=dict(target.attributes),
                value=value,
                description=SYNTHETIC_HELP[name],
                resource=target.resource,
                scope=SCOPE,
            )
            for name, value in zip(SYNTHETIC, values, strict=True)
        ]

    def _down(self, target: _Target, failure: ScrapeFailed) -> None:
        self.ctx.telemetry.protocol_errors.labels(self.id, failure.reason).inc()
        if target.health != failure.reason:
            self.log.warning("target %s is down: %s", target.describe(), failure.detail)
        target.health = failure.reason

    def _up(self, target: _Target, exposition: Exposition) -> None:
        if target.health not in ("", "up"):
            self.log.info("target %s is up again", target.describe())
        target.health = "up"
        if exposition.invalid:
            self.ctx.telemetry.protocol_errors.labels(self.id, "invalid_series").inc(exposition.invalid)
            if exposition.problem != target.problem:
                self.log.warning(
                    "target %s: %d sample(s) of invalid series left out: %s",
                    target.describe(),
                    exposition.invalid,
                    exposition.problem,
                )
        target.problem = exposition.problem

    async def _deliver(self, target: _Target, points: list[MetricPoint], size: int) -> bool:
        """Hands one scrape to the pipeline; False when refused (the samples are dropped)."""
        if not points:
            return True
        try:
            await self.consumers[Signal.METRICS].consume(
                Batch(Signal.METRICS, points, size or 100 * len(points))
            )
        except Refused as exc:
            log_now, quiet = self._refusals.due()
            if log_now:
                more = f" ({quiet} more refused scrapes not logged)" if quiet else ""
                self.log.warning(
                    "the pipeline refused %d points scraped from %s: %s; dropped, the next scrape brings "
                    "current values%s",
                    len(points),
                    target.describe(),
                    exc.reason,
                    more,
                )
            return False
        return True
