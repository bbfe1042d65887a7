"""SLO specs: the pydantic models of ``slos:`` entries and ``slo_files``, and loading them all.

An SLO counts events as good or bad and compares the bad ratio with its objective over a period:

- ``traces``: spans that ``match`` (resource or span attributes, ``span.kind``, ``span.name``) are
  events; one is bad when any ``bad`` condition holds: ``status: error``, ``http_status: ">=500"``,
  ``latency_over: 300ms`` or an attribute comparison.
- ``logs``: log records that ``match`` are events; bad when any ``bad`` condition holds:
  ``severity: ">=error"``, ``body: {regex: ...}`` (or ``{contains: ...}``) or an attribute
  comparison (``http.response.status_code: ">=500"``).
- ``metrics``: counter selectors (``total`` and one of ``good``/``bad``) read from every counter or
  histogram that passes a metrics pipeline (scrapes, remote_write, OTLP), as their increases.
- ``prometheus``: raw PromQL from Sloth files (``error_query``/``total_query``); only for rule
  generation, since burnline cannot evaluate PromQL in-stream.

``match`` is a map of key -> condition, all of which must hold; a key names a resource attribute
(``service.name``, ``k8s.namespace.name``) or, when the resource does not have it, a record
attribute. Without ``service.name`` in ``match`` an SLO looks at every service.
"""

from __future__ import annotations

import glob
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.config.types import Duration, parse_duration
from collector.config.yaml_text import load_yaml
from collector.slo import policy
from collector.slo.conditions import parse_comparison, parse_severity
from collector.slo.selector import parse_selector

if TYPE_CHECKING:
    from collector.config.model import Config

SLIKind = Literal["traces", "logs", "metrics", "prometheus"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SPAN_STATUSES = ("error", "ok", "unset")
_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.match(name):
            raise ValueError(f"{name!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return labels


def _check_comparison(key: str, value: Any) -> None:
    """A condition that is a value or a comparison (``">=500"``); the error names its key."""
    try:
        parse_comparison(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _check_match(match: dict[str, Any]) -> dict[str, Any]:
    for key, value in match.items():
        if key == "span.kind":
            if not isinstance(value, str) or value.lower() not in _SPAN_KINDS:
                raise ValueError(f"span.kind: {value!r} is not one of {', '.join(_SPAN_KINDS)}")
            continue
        _check_comparison(key, value)
    return match


class _EventSLI(_Strict):
    """An SLI over events (spans, log records): those that ``match`` count, those with any ``bad``
    condition are bad. A ``bad`` key the signal gives no meaning of its own is an attribute comparison."""

    match: dict[str, Any] = {}
    bad: dict[str, Any] = Field(min_length=1)

    _match = field_validator("match")(_check_match)

    @field_validator("bad")
    @classmethod
    def _bad(cls, bad: dict[str, Any]) -> dict[str, Any]:
        for key, value in bad.items():
            cls._check_bad(key, value)
        return bad

    @classmethod
    def _check_bad(cls, key: str, value: Any) -> None:
        _check_comparison(key, value)


class TraceSLI(_EventSLI):
    @classmethod
    def _check_bad(cls, key: str, value: Any) -> None:
        if key == "status":
            if not isinstance(value, str) or value.lower() not in _SPAN_STATUSES:
                raise ValueError(f"status: {value!r} is not one of error, ok, unset")
        elif key == "latency_over":
            if parse_duration(value) <= 0:
                raise ValueError("latency_over: must be more than 0")
        else:
            super()._check_bad(key, value)


class LogSLI(_EventSLI):
    @classmethod
    def _check_bad(cls, key: str, value: Any) -> None:
        if key == "severity":
            parse_severity(value)
        elif key == "body":
            if not isinstance(value, dict) or len(value) != 1 or not {"regex", "contains"} >= set(value):
                raise ValueError("body: takes {regex: '...'} or {contains: '...'}")
            if "regex" in value:
                try:
                    re.compile(str(value["regex"]))
                except re.error as exc:
                    raise ValueError(f"body.regex: invalid regex ({exc})") from None
        else:
            super()._check_bad(key, value)


def _check_selector(value: str | None) -> str | None:
    if value is not None:
        parse_selector(value)
    return value


class MetricSLI(_Strict):
    total: str
    good: str | None = None
    bad: str | None = None

    _selectors = field_validator("total", "good", "bad")(_check_selector)

    @model_validator(mode="after")
    def _one_of(self) -> MetricSLI:
        if (self.good is None) == (self.bad is None):
            raise ValueError("give exactly one of good and bad (with total)")
        return self


class PrometheusSLI(_Strict):
    """Sloth's ``events`` SLI: PromQL with ``{{.window}}`` where the range goes (rules only)."""

    error_query: str
    total_query: str


class SLISpec(_Strict):
    traces: TraceSLI | None = None
    logs: LogSLI | None = None
    metrics: MetricSLI | None = None
    prometheus: PrometheusSLI | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_kind(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in ("traces", "logs", "metrics", "prometheus")]
            if unknown:
                raise ValueError(
                    f"unknown SLI kind {unknown[0]!r} (use one of traces, logs, metrics, prometheus)"
                )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SLISpec:
        given = [k for k in ("traces", "logs", "metrics", "prometheus") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "an SLI has exactly one of traces, logs, metrics, prometheus"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> SLIKind:
        if self.traces is not None:
            return "traces"
        if self.logs is not None:
            return "logs"
        if self.metrics is not None:
            return "metrics"
        return "prometheus"


class AlertSpec(_Strict):
    enabled: bool = True
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}

    _labels = field_validator("labels")(_check_labels)


class AlertingSpec(_Strict):
    name: str = ""  # default: the SLO name in CamelCase
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    page: AlertSpec = AlertSpec()
    ticket: AlertSpec = AlertSpec()

    _labels = field_validator("labels")(_check_labels)


_DEFAULT_ALERTING: Final = AlertingSpec()


def camel_case(name: str) -> str:
    """'checkout-availability' -> 'CheckoutAvailability' (Prometheus alert names are identifiers)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


class SLOSpec(_Strict):
    name: str
    service: str = Field(min_length=1)
    objective: float
    period: Duration = policy.DEFAULT_PERIOD_SECONDS
    description: str = ""
    labels: dict[str, str] = {}
    sli: SLISpec
    # Without an alerting section, one shared default: a factory's result is not copied, where a
    # model default is deep-copied for every SLO (16MiB for ten thousand). Never written to: the
    # default alert name is computed (alert_name).
    alerting: AlertingSpec = Field(default_factory=lambda: _DEFAULT_ALERTING)
    source: str = Field(default="<config>", exclude=True)

    _labels = field_validator("labels")(_check_labels)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(
                f"{name!r} is not a valid SLO name (letters, digits and - _ . : after an alphanumeric)"
            )
        return name

    @field_validator("objective")
    @classmethod
    def _objective(cls, objective: float) -> float:
        if not (math.isfinite(objective) and 0.0 < objective < 100.0):
            raise ValueError(f"objective is a percentage strictly between 0 and 100, not {objective}")
        return objective

    @field_validator("period")
    @classmethod
    def _period(cls, period: float) -> float:
        policy.check_period(period)
        return period

    @property
    def alert_name(self) -> str:
        """alerting.name, or the SLO name in CamelCase ("checkout-availability" -> "CheckoutAvailability")."""
        return self.alerting.name or camel_case(self.name) or "SLO"

    @property
    def objective_ratio(self) -> float:
        return self.objective / 100.0

    @property
    def error_budget_ratio(self) -> float:
        return 1.0 - self.objective_ratio


def _config_dir(config: Config) -> Path:
    source = Path(config.source)
    if config.source.startswith("<") or not source.exists():
        return Path.cwd()
    return source.resolve().parent


def _entries(data: Any) -> list[Any] | None:
    """The SLO entries of a file: a ``slos:`` list, or a top-level list."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("slos"), list):
        return list(data["slos"])
    return None


def parse_slos(data: Any, source: str) -> tuple[list[SLOSpec], list[str]]:
    """The SLOs of one parsed file (native or Sloth ``prometheus/v1``) and the problems found."""
    from collector.config.loader import _validation_problems

    if isinstance(data, dict) and data.get("version") == "prometheus/v1":
        from collector.slo.sloth import SlothError, read_sloth

        try:
            sloth_slos = read_sloth(data, source)
        except SlothError as exc:
            return [], list(exc.problems)
        except ValidationError as exc:
            return [], _validation_problems("", exc)
        for slo in sloth_slos:
            slo.source = source
        return sloth_slos, []
    entries = _entries(data)
    if entries is None:
        return [], [
            "<top>: expected a list of SLOs, a mapping with slos:, or a Sloth file (version: prometheus/v1)"
        ]
    prefix = "slos" if isinstance(data, dict) else ""
    slos: list[SLOSpec] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        where = f"{prefix}[{i}]"
        try:
            slo = SLOSpec.model_validate(entry)
        except ValidationError as exc:
            problems.extend(_validation_problems(where, exc))
            continue
        slo.source = source
        slos.append(slo)
    return slos, problems


def load_slo_file(path: Path) -> tuple[list[SLOSpec], list[str]]:
    import yaml

    try:
        data = load_yaml(path.read_text("utf-8"))
    except OSError as exc:
        return [], [f"cannot read the file: {exc.strerror or exc}"]
    except UnicodeDecodeError:
        return [], ["the file is not UTF-8 text"]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return [], [f"{where}YAML syntax error: {getattr(exc, 'problem', None) or exc}"]
    return parse_slos(data, str(path))


def load_slos(config: Config | None, extra_files: list[str] | None = None) -> list[SLOSpec]:
    """Every SLO: ``config.slos``, then the files ``config.slo_files`` matches (globs relative to the
    config file's directory), then ``extra_files``. ConfigError lists every problem as
    ``file: key.path: problem``."""
    from collector.config.loader import ConfigError

    slos: list[SLOSpec] = []
    problems: list[tuple[str, str]] = []
    paths: list[Path] = []
    source = "<command line>"
    if config is not None:
        source = config.source
        for slo in config.slos:
            slo.source = config.source
            slos.append(slo)
        base = _config_dir(config)
        for i, pattern in enumerate(config.slo_files):
            full = pattern if Path(pattern).is_absolute() else str(base / pattern)
            matched = sorted(glob.glob(full, recursive=True))
            if not matched and not glob.has_magic(pattern):
                problems.append((config.source, f"slo_files[{i}]: file {pattern!r} does not exist"))
            paths.extend(Path(m) for m in matched)
    paths.extend(Path(p) for p in extra_files or [])
    for path in paths:
        found, file_problems = load_slo_file(path)
        slos.extend(found)
        problems.extend((str(path), p) for p in file_problems)
    seen: dict[str, SLOSpec] = {}
    for slo in slos:
        first = seen.setdefault(slo.name, slo)
        if first is not slo:
            problems.append((slo.source, f"duplicate SLO name {slo.name!r} (also in {first.source})"))
    if problems:
        files = {f for f, _ in problems}
        if len(files) == 1:
            raise ConfigError(files.pop(), [p for _, p in problems])
        raise ConfigError(source, [f"{f}: {p}" for f, p in problems])
    return slos
