"""The ``prometheus_scrape`` receiver: scrapes Prometheus endpoints, as a Prometheus server does.

Targets come from static ``jobs`` (``static_configs``) and from Kubernetes pods annotated
``prometheus.io/scrape: "true"`` (collector/discovery/kubernetes.py). Each target is scraped every
``scrape_interval`` at a fixed phase derived from a hash of the target, so that targets spread over
the interval instead of being hit at once (Prometheus does the same); at most
``max_concurrent_scrapes`` scrapes are in flight, each from its request until its batch is handed to
the pipeline. Bodies are parsed in the receiver's own thread (see ``_INLINE_PARSE_BYTES``).

With several workers (``service.workers``) every worker runs this receiver with the same targets, and
each scrapes only those it owns (``WorkerIdentity.owns`` of the target's job, URL and labels: the same
answer in every worker and across restarts), so that each target is scraped once, not once per worker.
Discovered pods are split the same way.

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
import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from collector.config.types import split_endpoint
from collector.core.component import ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, MetricKind, MetricPoint, Signal, Temporality
from collector.core.problem_log import RateLimitedLog
from collector.discovery import TargetSource, TargetSpec
from collector.normalize.prometheus import is_openmetrics, parse_exposition
from collector.normalize.prometheus_families import Exposition, ExpositionError
from collector.receivers.prometheus_scrape.config import KubernetesPodsConfig, PrometheusScrapeConfig
from collector.receivers.prometheus_scrape.fetch import connection_reason, read_body
from collector.receivers.prometheus_scrape.target import (
    SCOPE,
    Job,
    ScrapeFailed,
    Series,
    SeriesKey,
    Target,
    series_key,
    stale_point,
)
from collector.translator.prometheus import target_resource

if TYPE_CHECKING:
    from collector.discovery.kubernetes import KubernetesPodDiscovery

# The series Prometheus adds for every target, with what they say.
SYNTHETIC_HELP = {
    "up": "1 if the last scrape of the target succeeded, 0 if it failed.",
    "scrape_duration_seconds": "How long the last scrape of the target took.",
    "scrape_samples_scraped": "Samples the target exposed in the last scrape.",
    "scrape_samples_post_metric_relabeling": "Samples of the last scrape that were kept.",
    "scrape_series_added": "Series in the last scrape that were not in the one before.",
}
SYNTHETIC = tuple(SYNTHETIC_HELP)

# Parsing is pure Python, about 70 µs a sample: an ordinary target of a few hundred samples takes tens
# of milliseconds. On the event loop, the parses of many targets took nearly every turn of the loop,
# and the exporters' short steps waited behind them: delivery starved while the queue grew. So every
# body but a small one is parsed in this receiver's own thread, one at a time, and the GIL's switch
# interval shares the core between parsing and the rest of the process. A small body (a few dozen
# samples, a few milliseconds at most) is parsed inline.
_INLINE_PARSE_BYTES = 8 * 1024


@dataclass(slots=True)
class _Outcome:
    """A parsed scrape: its points (staleness markers included) and the series it has."""

    points: list[MetricPoint]
    series: dict[SeriesKey, Series]
    exposition: Exposition


# ---------------------------------------------------------------------------------------------


@register
class PrometheusScrapeReceiver(Receiver[PrometheusScrapeConfig]):
    """Scrapes static and Kubernetes-discovered Prometheus targets into metric points."""

    type_name = "prometheus_scrape"
    config_model = PrometheusScrapeConfig
    signals = frozenset({Signal.METRICS})

    def __init__(
        self, config: PrometheusScrapeConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]
    ) -> None:
        super().__init__(config, ctx, consumers)
        self.jobs: dict[str, Job] = {}
        for job in config.scraped_jobs():
            interval, timeout = config.timing(job)
            self.jobs[job.job_name] = Job(job.job_name, job, interval, timeout)
        # How many distinct targets each job was last given, owned by this worker or not.
        self.offered: dict[str, int] = {name: 0 for name in self.jobs}
        # The running targets of each job (this worker's share), by target key.
        self.targets: dict[str, dict[tuple[str, str, tuple[tuple[str, str], ...]], Target]] = {
            name: {} for name in self.jobs
        }
        self.discovery: KubernetesPodDiscovery | None = None
        self._session: aiohttp.ClientSession | None = None
        # A scrape holds a slot from its request until its batch is handed over, so at most this many
        # bodies and parsed scrapes are held, and a core that cannot parse every scrape in time makes
        # scrapes wait (missed ticks are skipped) rather than pile up.
        self._slots = asyncio.Semaphore(config.max_concurrent_scrapes)
        self._parser: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._refusals = RateLimitedLog()
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
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"burnline-{self.id}-parse")
        self._running = True
        try:
            for job_config in self.config.jobs:
                specs = [
                    TargetSpec(address=address, labels=tuple(sorted(static.labels.items())))
                    for static in job_config.static_configs
                    for address in static.targets
                ]
                await self.apply(job_config.job_name, specs)
            pods: KubernetesPodsConfig | None = self.config.kubernetes_pods
            if pods is not None and pods.enabled:
                # Imported here: the Kubernetes client's models take about 65 MiB of every process
                # that imports them, and only pod discovery needs them.
                from collector.discovery.kubernetes import KubernetesPodDiscovery

                self.discovery = KubernetesPodDiscovery(pods, self.log, on_error=self._discovery_error)
                await self.discovery.start()
                self._tasks.append(asyncio.create_task(self._follow(self.discovery, pods.job_name)))
        except BaseException:
            await self.stop()
            raise
        static = sum(len(targets) for targets in self.targets.values())
        worker = self.ctx.worker
        share = ""
        if worker.shared:
            offered = sum(self.offered[job.job_name] for job in self.config.jobs)
            share = f" of {offered} ({worker}; the other workers scrape the rest)"
        self.log.info(
            "scraping %d static target(s)%s in %d job(s)%s",
            static,
            share,
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
        if self._parser is not None:
            self._parser.shutdown(wait=False, cancel_futures=True)
            self._parser = None

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
        offered: dict[tuple[str, str, tuple[tuple[str, str], ...]], Target] = {}
        for spec in specs:
            target = self._target(job, spec)
            offered.setdefault(target.key, target)
        self.offered[job_name] = len(offered)
        # Only this worker's share (all of them with one worker): a stable hash of the whole key, so
        # that targets on one address with different labels spread too.
        worker = self.ctx.worker
        desired = {key: target for key, target in offered.items() if worker.owns(repr(key))}
        gone = [current.pop(key) for key in list(current) if key not in desired]
        new = [target for key, target in desired.items() if key not in current]
        for target in new:
            current[target.key] = target
            target.task = asyncio.create_task(self._run(target), name=f"scrape {target.url}")
        if gone or new:
            share = f" of {len(offered)} ({worker})" if worker.shared else ""
            self.log.info(
                "job %s: %d target(s)%s (%d new, %d gone)",
                job_name,
                len(current),
                share,
                len(new),
                len(gone),
            )
        for target in gone:
            await self._retire(target)

    def _target(self, job: Job, spec: TargetSpec) -> Target:
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
        resource = target_resource(labels["job"], labels["instance"])
        resource.update({"server.address": host, "server.port": port, "url.scheme": scheme})
        resource.update(spec.resource)
        key = (job.name, str(url), tuple(sorted(labels.items())))
        attributes = {k: v for k, v in labels.items() if k not in ("job", "instance")}
        return Target(
            job=job, spec=spec, url=url, labels=labels, resource=resource, key=key, attributes=attributes
        )

    async def _retire(self, target: Target) -> None:
        if target.task is not None:
            target.task.cancel()
            await asyncio.gather(target.task, return_exceptions=True)
        now = time.time_ns()
        points = [stale_point(key, s, now) for key, s in target.series.items() if s.marked]
        if target.health:  # scraped at least once: its up, scrape_duration_seconds, ... end too
            attributes = tuple(sorted(target.attributes.items()))
            job, instance = target.labels["job"], target.labels["instance"]
            gauge = Series(MetricKind.GAUGE, False, Temporality.UNSPECIFIED, target.resource)
            points.extend(stale_point((name, attributes, job, instance), gauge, now) for name in SYNTHETIC)
        target.series = {}
        await self._deliver(target, points, 0)

    # -- scraping

    async def _run(self, target: Target) -> None:
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
                # Behind schedule (a slow target or pipeline, or every scrape slot busy): skip the
                # missed ticks rather than scrape in a burst, and count them.
                missed = math.floor((now - next_at) / interval + 1)
                next_at += missed * interval
                self.ctx.telemetry.scrapes_missed.labels(self.id, target.job.name).inc(missed)
            await asyncio.sleep(next_at - now)

    async def scrape(self, target: Target) -> None:
        """One scrape of one target, delivered as one batch."""
        async with self._slots:
            await self._scrape(target)

    async def _scrape(self, target: Target) -> None:
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
                if len(body) > _INLINE_PARSE_BYTES and self._parser is not None:
                    outcome = await asyncio.get_running_loop().run_in_executor(
                        self._parser, self._process, target, body, content_type, scrape_ns
                    )
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
        points = [stale_point(key, s, scrape_ns) for key, s in target.series.items() if s.marked]
        points.extend(self._synthetic(target, scrape_ns, 0, duration, (0, 0, 0)))
        if await self._deliver(target, points, len(body)):
            target.series = {}

    async def _fetch(self, target: Target) -> tuple[bytes, str]:
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
            raise ScrapeFailed(connection_reason(exc), f"cannot connect: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise ScrapeFailed("http_error", f"{type(exc).__name__}: {exc}") from None

    def _process(self, target: Target, body: bytes, content_type: str, scrape_ns: int) -> _Outcome:
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
        series: dict[SeriesKey, Series] = {}
        # A scrape's series come in a few shapes (kind, temporality, resource): one Series each.
        shapes: dict[tuple[Any, ...], Series] = {}
        for point in exposition.points:
            marked = point.time_unix_nano == scrape_ns
            shape = (point.kind, point.monotonic, point.temporality, id(point.resource), marked)
            held = shapes.get(shape)
            if held is None:
                held = shapes[shape] = Series(
                    point.kind, point.monotonic, point.temporality, point.resource, marked
                )
            series[series_key(point)] = held
        points = exposition.points
        for key, old in target.series.items():
            if old.marked and key not in series:
                points.append(stale_point(key, old, scrape_ns))
        return _Outcome(points, series, exposition)

    def _synthetic(
        self, target: Target, time_ns: int, up: int, duration: float, counts: tuple[int, int, int]
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

    def _down(self, target: Target, failure: ScrapeFailed) -> None:
        self.ctx.telemetry.protocol_errors.labels(self.id, failure.reason).inc()
        if target.health != failure.reason:
            self.log.warning("target %s is down: %s", target.describe(), failure.detail)
        target.health = failure.reason

    def _up(self, target: Target, exposition: Exposition) -> None:
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

    async def _deliver(self, target: Target, points: list[MetricPoint], size: int) -> bool:
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
