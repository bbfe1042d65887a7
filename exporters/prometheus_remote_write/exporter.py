"""The ``prometheus_remote_write`` exporter: metric points pushed as Prometheus remote-write 1.0.

Each export sends the batch as one or more ``prometheus.WriteRequest``\\s (at most
``max_samples_per_request`` samples each), snappy block-compressed, with the headers the spec
requires (Content-Encoding: snappy, Content-Type: application/x-protobuf, User-Agent,
X-Prometheus-Remote-Write-Version: 0.1.0). Names and labels are translated as the ``prometheus``
exporter does (OpenTelemetry's Prometheus compatibility spec, see exporters/prometheus.py); label
names are sorted, and the samples of a series are sent in time order: points are sorted by time
before they are cut into requests, requests go out one after the other, and the exporter's
``concurrency`` defaults to 1 so that two batches never race (raise it only for a receiver that
accepts out-of-order samples).

- Counters are ``<name>_total``; gauges, unknown-typed and info series (``<name>_info``) one series
  each; histograms ``_bucket`` (``le``, cumulative, up to ``+Inf``), ``_count`` and ``_sum``;
  summaries one series per ``quantile`` plus ``_count`` and ``_sum``. Stale markers (points flagged
  NO_RECORDED_VALUE) are sent as Prometheus' stale NaN on every series of the point.
- Resource attributes besides job/instance go to a ``target_info`` series per job/instance and
  request; metadata (type, help, unit per family) is sent along (``send_metadata``).
- Exemplars of counters and histogram buckets are sent (all of them, each on the bucket its value
  falls in); Prometheus keeps them only with ``--enable-feature=exemplar-storage`` and ignores them
  otherwise.
- Exponential histograms: ``exponential_histograms: native`` sends them as native histograms (scale
  above 8 downscaled, below -4 dropped; the receiver must accept native histograms: Prometheus
  needs ``--enable-feature=native-histograms``), ``drop`` (default) drops them, counted: a Prometheus
  without that feature answers 400 and the whole request would be dead-lettered.
- Delta-temporality points have no remote-write form without a state of running totals, and are
  dropped (counted, reason ``delta_temporality``); use cumulative sources.

Answers: 2xx delivered. 5xx and 429 are retried by the sender with backoff, honouring Retry-After.
413 halves the request until it fits. Any other 4xx will never succeed (the spec forbids retrying
it): the request's points go to the dead-letter file with the receiver's message. Connection
failures and timeouts are retried.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import math
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import cramjam
from pydantic import Field, SecretStr, field_validator, model_validator

from collector import __version__
from collector.config.types import ClientTLS, Duration
from collector.core.component import ComponentContext, Exporter, RetryableExportError, register
from collector.core.model import Batch, Exemplar, MetricKind, MetricPoint, Signal, Temporality
from collector.exporterhelper.sender import ExporterConfig
from collector.prompb import remote_pb2, types_pb2
from exporters.prometheus.exporter import (
    FLAG_NO_RECORDED_VALUE,
    DropLog,
    NamingConfig,
    Target,
    Translator,
    Unsupported,
    bucket_exemplars,
    go_float,
    label_value,
    reserved_label,
    sanitize_label_name,
    sanitize_metric_name,
)

PROTOCOL_VERSION = "0.1.0"
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
# The spec's default zero threshold for exponential histograms that carry none.
DEFAULT_ZERO_THRESHOLD = 1e-128
MAX_RETRY_AFTER = 300.0
# Headers Prometheus does not let its users set (remote-write spec: reserved headers), plus the
# hop-by-hop ones an HTTP client manages itself.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "content-encoding",
        "content-length",
        "content-type",
        "x-prometheus-remote-write-version",
        "user-agent",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "www-authenticate",
        "transfer-encoding",
    }
)

_METADATA_TYPES = {
    "counter": types_pb2.MetricMetadata.COUNTER,
    "gauge": types_pb2.MetricMetadata.GAUGE,
    "histogram": types_pb2.MetricMetadata.HISTOGRAM,
    "summary": types_pb2.MetricMetadata.SUMMARY,
    "info": types_pb2.MetricMetadata.INFO,
    "unknown": types_pb2.MetricMetadata.UNKNOWN,
}


class PrometheusRemoteWriteConfig(ExporterConfig, NamingConfig):
    endpoint: str
    headers: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    tls: ClientTLS | None = None
    timeout: Duration = 30.0
    # Prometheus' own default max_samples_per_send.
    max_samples_per_request: int = Field(default=2000, ge=1)
    send_metadata: bool = True
    exponential_histograms: Literal["drop", "native"] = "drop"
    user_agent: str = f"burnline/{__version__}"
    # One request at a time keeps every series' samples in order across batches (see module doc).
    concurrency: int = Field(default=1, ge=1, le=64)

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                f"{value!r} is not a remote-write URL (e.g. http://prometheus:9090/api/v1/write)"
            )
        if url.username or url.password:
            raise ValueError(f"{value!r}: put credentials in username/password or bearer_token, not the URL")
        return value

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in value if k.strip().lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(
                f"header(s) {', '.join(reserved)} cannot be set: the protocol and the exporter own them "
                "(credentials go in username/password or bearer_token)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusRemoteWriteConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and self.bearer_token is not None:
            raise ValueError("set either username and password or bearer_token, not both")
        if self.timeout <= 0:
            raise ValueError("timeout must be more than 0")
        if self.tls is not None and not self.endpoint.startswith("https://"):
            raise ValueError("tls is set but the endpoint is not https://")
        return self


# ---------------------------------------------------------------------------------------------------
# Encoding


@dataclass(slots=True)
class _SeriesBuffer:
    labels: list[tuple[str, str]]
    samples: list[tuple[int, float]] = field(default_factory=list)
    histograms: list[types_pb2.Histogram] = field(default_factory=list)
    exemplars: list[types_pb2.Exemplar] = field(default_factory=list)


def sample_count(point: MetricPoint) -> int:
    """How many samples a point becomes (to cut batches into requests)."""
    if point.kind == MetricKind.HISTOGRAM:
        return len(point.explicit_bounds) + 3
    if point.kind == MetricKind.SUMMARY:
        return len(point.quantiles) + 2
    return 1


def _exemplar(e: Exemplar) -> types_pb2.Exemplar:
    out = types_pb2.Exemplar(value=float(e.value), timestamp=e.time_unix_nano // 1_000_000)
    labels: dict[str, str] = {}
    for key, raw in e.filtered_attributes.items():
        value = label_value(raw)
        if value:
            labels[sanitize_label_name(key)] = value
    if e.trace_id:
        labels["trace_id"] = e.trace_id
    if e.span_id:
        labels["span_id"] = e.span_id
    for name, value in sorted(labels.items()):
        out.labels.add(name=name, value=value)
    return out


def _downscale(offset: int, counts: Sequence[int], by: int) -> tuple[int, list[int]]:
    if by <= 0 or not counts:
        return offset, list(counts)
    merged: dict[int, int] = {}
    for i, c in enumerate(counts):
        j = (offset + i) >> by
        merged[j] = merged.get(j, 0) + c
    first = min(merged)
    return first, [merged.get(first + k, 0) for k in range(max(merged) - first + 1)]


def _spans(offset: int, counts: Sequence[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Dense OpenTelemetry buckets -> Prometheus (offset, length) spans and count deltas, non-empty
    buckets only; a bucket's Prometheus index is one more than its OpenTelemetry one."""
    spans: list[list[int]] = []
    deltas: list[int] = []
    previous_count = 0
    end: int | None = None  # the Prometheus index just past the current span
    for i, c in enumerate(counts):
        if not c:
            continue
        index = offset + i + 1
        if end == index:
            spans[-1][1] += 1
        else:
            spans.append([index if end is None else index - end, 1])
        end = index + 1
        deltas.append(c - previous_count)
        previous_count = c
    return [(o, n) for o, n in spans], deltas


def native_histogram(point: MetricPoint) -> types_pb2.Histogram:
    """An exponential histogram point as a Prometheus native histogram (raises Unsupported)."""
    scale = point.scale
    pos_offset, pos = point.positive_offset, list(point.positive_bucket_counts)
    neg_offset, neg = point.negative_offset, list(point.negative_bucket_counts)
    if scale > 8:
        pos_offset, pos = _downscale(pos_offset, pos, scale - 8)
        neg_offset, neg = _downscale(neg_offset, neg, scale - 8)
        scale = 8
    if scale < -4:
        raise Unsupported("histogram_scale", f"scale {point.scale} is below Prometheus' -4")
    h = types_pb2.Histogram(
        schema=scale,
        zero_threshold=point.zero_threshold or DEFAULT_ZERO_THRESHOLD,
        zero_count_int=point.zero_count,
        timestamp=point.time_unix_nano // 1_000_000,
    )
    if point.flags & FLAG_NO_RECORDED_VALUE:
        h.count_float = STALE_NAN
        h.sum = STALE_NAN
        return h
    h.count_int = point.count
    h.sum = point.sum if point.sum is not None else 0.0
    for spans, deltas, offset, counts in (
        (h.positive_spans, h.positive_deltas, pos_offset, pos),
        (h.negative_spans, h.negative_deltas, neg_offset, neg),
    ):
        layout, changes = _spans(offset, counts)
        for gap, length in layout:
            spans.add(offset=gap, length=length)
        deltas.extend(changes)
    return h


# Adds one sample to a series of the point being encoded: (name, extra labels, value) -> its series.
_Add = Callable[[str, dict[str, str] | None, float], _SeriesBuffer]


class Encoder:
    """Points -> WriteRequest bodies. Runs in a worker thread; touches only its own state."""

    def __init__(self, config: PrometheusRemoteWriteConfig, translator: Translator) -> None:
        self.config = config
        self.translator = translator

    def classify(self, point: MetricPoint) -> str:
        """The OpenMetrics type of a point this exporter can send; raises Unsupported."""
        if point.temporality == Temporality.DELTA and point.kind != MetricKind.GAUGE:
            raise Unsupported("delta_temporality", "delta points need a running total remote-write lacks")
        if point.kind == MetricKind.EXPONENTIAL_HISTOGRAM:
            if self.config.exponential_histograms == "native":
                return "histogram"
            raise Unsupported(
                "exponential_histogram", "exponential histograms are dropped (exponential_histograms: drop)"
            )
        return self.translator.prometheus_type(point)

    def encode(self, points: list[MetricPoint]) -> bytes:
        request = remote_pb2.WriteRequest()
        series: dict[tuple[tuple[str, str], ...], _SeriesBuffer] = {}
        families: dict[str, tuple[str, str, str]] = {}
        targets: dict[tuple[str, str], tuple[Target, int]] = {}
        for point in points:
            self._point(point, series, families, targets)
        for target, ts in targets.values():
            labels = sorted({**target.labels, "__name__": "target_info"}.items())
            buffer = series.setdefault(tuple(labels), _SeriesBuffer(labels))
            buffer.samples.append((ts, 1.0))
        for buffer in series.values():
            ts_proto = request.timeseries.add()
            for name, value in buffer.labels:
                ts_proto.labels.add(name=name, value=value)
            buffer.samples.sort(key=lambda s: s[0])
            for t, v in buffer.samples:
                ts_proto.samples.add(value=v, timestamp=t)
            if buffer.histograms:
                buffer.histograms.sort(key=lambda h: h.timestamp)
                ts_proto.histograms.extend(buffer.histograms)
            if buffer.exemplars:
                ts_proto.exemplars.extend(buffer.exemplars)
        if self.config.send_metadata:
            for name, (ptype, help_text, unit) in families.items():
                request.metadata.add(
                    type=_METADATA_TYPES.get(ptype, types_pb2.MetricMetadata.UNKNOWN),
                    metric_family_name=name,
                    help=help_text,
                    unit=unit,
                )
        return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))

    def _point(
        self,
        point: MetricPoint,
        series: dict[tuple[tuple[str, str], ...], _SeriesBuffer],
        families: dict[str, tuple[str, str, str]],
        targets: dict[tuple[str, str], tuple[Target, int]],
    ) -> None:
        ptype = self.classify(point)
        family = self.translator.family(point, ptype)
        labels, target = self.translator.labels(point, reserved_label(ptype))
        ts = point.time_unix_nano // 1_000_000
        stale = bool(point.flags & FLAG_NO_RECORDED_VALUE)

        def add(name: str, extra: dict[str, str] | None, value: float) -> _SeriesBuffer:
            pairs = sorted({**labels, **(extra or {}), "__name__": name}.items())
            key = tuple(pairs)
            buffer = series.get(key)
            if buffer is None:
                buffer = series[key] = _SeriesBuffer(pairs)
            buffer.samples.append((ts, STALE_NAN if stale else value))
            return buffer

        name = family.name
        if ptype == "counter":
            if self.config.add_metric_suffixes or sanitize_metric_name(point.name).endswith("_total"):
                name += "_total"
            buffer = add(name, None, float(point.value or 0))
            buffer.exemplars.extend(_exemplar(e) for e in point.exemplars)
        elif point.kind == MetricKind.HISTOGRAM:
            self._histogram(point, name, add)
        elif point.kind == MetricKind.EXPONENTIAL_HISTOGRAM:
            pairs = sorted({**labels, "__name__": name}.items())
            buffer = series.setdefault(tuple(pairs), _SeriesBuffer(pairs))
            buffer.histograms.append(native_histogram(point))
            buffer.exemplars.extend(_exemplar(e) for e in point.exemplars)
        elif point.kind == MetricKind.SUMMARY:
            for quantile, value in sorted(point.quantiles):
                add(name, {"quantile": go_float(quantile)}, float(value))
            add(name + "_count", None, float(point.count))
            add(name + "_sum", None, float(point.sum or 0.0))
        elif ptype == "info":
            name += "_info"
            add(name, None, float(point.value if point.value is not None else 1.0))
        else:
            add(name, None, float(point.value if point.value is not None else math.nan))
        family_key = name if ptype in ("counter", "info") else family.name
        if family_key not in families:
            families[family_key] = (ptype, family.help, family.unit)
        if target is not None:
            held = targets.get((target.job, target.instance))
            if held is None or held[1] < ts:
                targets[(target.job, target.instance)] = (target, ts)

    @staticmethod
    def _histogram(point: MetricPoint, name: str, add: _Add) -> None:
        bounds = [go_float(b) for b in point.explicit_bounds] + ["+Inf"]
        counts = point.bucket_counts if len(point.bucket_counts) == len(bounds) else None
        exemplars = bucket_exemplars(point) if point.exemplars else None
        cumulative = 0
        for i, le in enumerate(bounds):
            if counts is not None:
                cumulative += counts[i]
            elif le != "+Inf":
                continue  # no per-bucket counts: only the +Inf bucket (the count) is known
            else:
                cumulative = point.count
            buffer = add(name + "_bucket", {"le": le}, float(cumulative))
            if exemplars is not None:
                held = exemplars[i]
                if held is not None:
                    buffer.exemplars.append(_exemplar(held))
        add(name + "_count", None, float(point.count))
        if point.sum is not None:
            add(name + "_sum", None, float(point.sum))


# ---------------------------------------------------------------------------------------------------
# The exporter


def retry_after(header: str | None) -> float | None:
    """Retry-After in seconds (a number, or an HTTP date); None when absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, min(float(header), MAX_RETRY_AFTER))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))


@register
class PrometheusRemoteWriteExporter(Exporter):
    """Pushes metric points to a remote-write endpoint (Prometheus, Mimir, Thanos, VictoriaMetrics)."""

    type_name = "prometheus_remote_write"
    config_model = PrometheusRemoteWriteConfig
    signals = frozenset({Signal.METRICS})

    config: PrometheusRemoteWriteConfig

    def __init__(self, config: PrometheusRemoteWriteConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self.translator = Translator(config)
        self.encoder = Encoder(config, self.translator)
        self._drops = DropLog(self)
        self._session: aiohttp.ClientSession | None = None
        self._headers = {
            **config.headers,
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "User-Agent": config.user_agent,
            "X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION,
        }
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else ""
            credentials = base64.b64encode(f"{config.username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {credentials}"
        if config.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        self._failing: str | None = None

    async def start(self) -> None:
        ssl_context: ssl.SSLContext | bool = self.config.tls.context() if self.config.tls else True
        connector = aiohttp.TCPConnector(ssl=ssl_context, limit=max(4, self.config.concurrency * 2))
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            auto_decompress=True,
        )
        self.log.info("remote-writing metrics to %s", self.config.endpoint)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def plan(self, points: Sequence[Any]) -> list[list[MetricPoint]]:
        """The batch cut into requests: points in time order, each request within
        ``max_samples_per_request`` samples (a point is never split). Unsendable points are dropped."""
        sendable: list[MetricPoint] = []
        for point in points:
            if not isinstance(point, MetricPoint):
                self._drops.drop("not_a_metric", f"{type(point).__name__} is not a metric point")
                continue
            try:
                self.encoder.classify(point)
            except Unsupported as exc:
                self._drops.drop(exc.reason, f"{point.name}: {exc.detail}")
                continue
            sendable.append(point)
        sendable.sort(key=lambda p: p.time_unix_nano)
        limit = self.config.max_samples_per_request
        requests: list[list[MetricPoint]] = []
        current: list[MetricPoint] = []
        samples = 0
        for point in sendable:
            n = sample_count(point)
            if current and samples + n > limit:
                requests.append(current)
                current, samples = [], 0
            current.append(point)
            samples += n
        if current:
            requests.append(current)
        return requests

    async def export(self, batch: Batch) -> int:
        requests = self.plan(batch.items)
        delivered = rejected = 0
        for index, points in enumerate(requests):
            try:
                landed, refused = await self._send(points)
            except RetryableExportError as exc:
                rest = [p for chunk in requests[index:] for p in chunk]
                per_point = max(1, batch.size_bytes // max(1, len(batch)))
                raise RetryableExportError(
                    exc.reason,
                    remaining=Batch(Signal.METRICS, rest, per_point * len(rest)),
                    retry_after=exc.retry_after,
                    delivered=delivered,
                    rejected=rejected,
                ) from exc
            delivered += landed
            rejected += refused
        if self._failing is not None:
            self.log.info("remote-write to %s works again", self.config.endpoint)
            self._failing = None
        return delivered

    async def _send(self, points: list[MetricPoint]) -> tuple[int, int]:
        """Sends one request; returns (delivered, dead-lettered). Raises RetryableExportError."""
        if len(points) > 200:
            body = await asyncio.to_thread(self.encoder.encode, points)
        else:
            body = self.encoder.encode(points)
        status, text, hint = await self._post(body)
        if 200 <= status < 300:
            return len(points), 0
        if status == 429 or status >= 500:
            self._log_failure(
                f"http_{status}", "remote-write to %s answered %d: %s; will retry", status, text
            )
            raise RetryableExportError(f"http_{status}", retry_after=hint)
        if status == 413 and len(points) > 1:
            half = len(points) // 2
            first = await self._send(points[:half])
            second = await self._send(points[half:])
            return first[0] + second[0], first[1] + second[1]
        self.log.error(
            "remote-write to %s answered %d: %s; %d point(s) go to the dead-letter file",
            self.config.endpoint,
            status,
            text,
            len(points),
        )
        await asyncio.to_thread(
            self.dead_letter.write,
            Signal.METRICS,
            [self.dead_letter_view(p) for p in points],
            f"http_{status}",
            text,
        )
        return 0, len(points)

    async def _post(self, body: bytes) -> tuple[int, str, float | None]:
        if self._session is None:
            raise RetryableExportError("not_started")
        try:
            async with self._session.post(self.config.endpoint, data=body, headers=self._headers) as response:
                text = (await response.content.read(1024)).decode("utf-8", "replace").strip()
                return response.status, text, retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            self._log_failure(
                "timeout", "remote-write to %s timed out after %.0fs; will retry", self.config.timeout
            )
            raise RetryableExportError("timeout") from None
        except aiohttp.ClientError as exc:
            self._log_failure("connection", "remote-write to %s failed: %s; will retry", exc)
            raise RetryableExportError("connection") from None

    def _log_failure(self, reason: str, msg: str, *args: Any) -> None:
        # Once per kind of failure: the sender already logs each retry.
        if self._failing != reason:
            self.log.error(msg, self.config.endpoint, *args)
            self._failing = reason
