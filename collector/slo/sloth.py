"""Sloth ``prometheus/v1`` SLO files (github.com/slok/sloth, pkg/prometheus/api/v1), read into SLOSpecs.

A Sloth file names one service, its labels and its SLOs; each SLI is Prometheus queries with a
``{{.window}}`` placeholder: ``events`` (``error_query`` / ``total_query``) or ``raw``
(``error_ratio_query``). burnline turns them into ``prometheus`` SLIs, which only the generated rules
evaluate (collector/slo/rules.py); the in-stream engine cannot run PromQL. What Sloth does and burnline
follows: SLO labels are the file's labels merged with the SLO's; ``page_alert`` / ``ticket_alert``
inherit ``alerting.labels`` and ``annotations``; ``disable: true`` drops an alert. The period is not in
the file (Sloth takes it from ``--default-slo-period``): 30 days here, as Sloth's default.

Keys are Sloth's snake_case; the camelCase of Sloth's Kubernetes CRD (``errorQuery``, ``pageAlert`` …)
is accepted too, since specs get copied between the two. Unlike Sloth, unknown keys are errors (a
misspelt ``ticket_alert`` would otherwise silently page), and so are SLI plugins (Go code burnline
cannot run) and an objective of 100 % (no error budget to burn).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.config.loader import _validation_problems
from collector.slo.spec import SLOSpec

VERSION = "prometheus/v1"

# spec.PrometheusSLI has error_query and total_query only: a raw error ratio is stored as
# error_query=<ratio>, total_query=RAW_TOTAL (ratio / 1 is the ratio), and rules.py writes Sloth's raw
# form, ``(<ratio>)``, for it.
RAW_TOTAL = "1"


class SlothError(ValueError):
    """A Sloth file burnline cannot read; ``problems`` are ``key.path: problem`` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(problems))


# Go template actions Sloth renders its queries with; only {{.window}} has a value.
_WINDOW_ACTION = re.compile(r"\{\{-?\s*\.window\s*-?\}\}")
_ANY_ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)


def render_window(query: str, window: str) -> str:
    """``query`` with every ``{{.window}}`` replaced by ``window`` (e.g. "5m"); ValueError for any other
    template action, which Sloth would refuse too (it renders with missingkey=error)."""
    rendered = _WINDOW_ACTION.sub(window, query)
    other = _ANY_ACTION.search(rendered)
    if other is not None:
        raise ValueError(f"unsupported template action {other.group(0)!r} (only {{{{.window}}}} is known)")
    return rendered


def _stringify(value: Any) -> Any:
    # YAML turns `tier: 2` into an int; Prometheus labels and annotations are strings.
    if isinstance(value, dict):
        return {k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
                for k, v in value.items()}  # fmt: skip
    return value


StringMap = Annotated[dict[str, str], BeforeValidator(_stringify)]


def _alias(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlothAlert(_Model):
    disable: bool = False
    labels: StringMap = {}
    annotations: StringMap = {}


class SlothAlerting(_Model):
    name: str = ""
    labels: StringMap = {}
    annotations: StringMap = {}
    page_alert: SlothAlert | None = _alias("page_alert", "pageAlert")
    ticket_alert: SlothAlert | None = _alias("ticket_alert", "ticketAlert")


class SlothEvents(_Model):
    error_query: str = Field(min_length=1, validation_alias=AliasChoices("error_query", "errorQuery"))
    total_query: str = Field(min_length=1, validation_alias=AliasChoices("total_query", "totalQuery"))

    @field_validator("error_query", "total_query")
    @classmethod
    def _renders(cls, query: str) -> str:
        render_window(query, "5m")
        return query


class SlothRaw(_Model):
    error_ratio_query: str = Field(
        min_length=1, validation_alias=AliasChoices("error_ratio_query", "errorRatioQuery")
    )

    @field_validator("error_ratio_query")
    @classmethod
    def _renders(cls, query: str) -> str:
        render_window(query, "5m")
        return query


class SlothSLI(_Model):
    events: SlothEvents | None = None
    raw: SlothRaw | None = None
    plugin: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SlothSLI:
        if self.plugin is not None:
            plugin_id = self.plugin.get("id", "?")
            raise ValueError(
                f"SLI plugins are not supported (plugin {plugin_id!r} is Go code burnline cannot run): "
                "write the SLI as `events` (error_query, total_query) or `raw` (error_ratio_query)"
            )
        kinds = [kind for kind in ("events", "raw") if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "an SLI needs exactly one of `events` or `raw`"
                + (f" (got {' and '.join(kinds)})" if kinds else "")
            )
        return self


class SlothSLO(_Model):
    name: str = Field(min_length=1)
    objective: float
    description: str = ""
    labels: StringMap = {}
    sli: SlothSLI
    alerting: SlothAlerting = SlothAlerting()

    @field_validator("objective")
    @classmethod
    def _has_a_budget(cls, objective: float) -> float:
        if not 0 < objective < 100:
            raise ValueError(
                f"objective is a percentage between 0 and 100 (exclusive), not {objective}"
                + (": 100 % leaves no error budget to burn" if objective == 100 else "")
            )
        return objective


class SlothSpec(_Model):
    """The whole file, as Sloth's prometheusv1.Spec."""

    version: Literal["prometheus/v1"]
    service: str = Field(min_length=1)
    labels: StringMap = {}
    slos: list[SlothSLO] = Field(min_length=1)


def _alert(alerting: SlothAlerting, alert: SlothAlert | None) -> dict[str, Any]:
    alert = alert or SlothAlert()
    return {"enabled": not alert.disable, "labels": alert.labels, "annotations": alert.annotations}


def _sli(sli: SlothSLI) -> dict[str, Any]:
    if sli.events is not None:
        return {"error_query": sli.events.error_query, "total_query": sli.events.total_query}
    assert sli.raw is not None
    return {"error_query": sli.raw.error_ratio_query, "total_query": RAW_TOTAL}


def to_slo_dict(spec: SlothSpec, slo: SlothSLO, source: str) -> dict[str, Any]:
    """One Sloth SLO in burnline's own SLO config shape (the entries of ``slos:``)."""
    return {
        "name": slo.name,
        "service": spec.service,
        "objective": slo.objective,
        "description": slo.description,
        "labels": {**spec.labels, **slo.labels},
        "sli": {"prometheus": _sli(slo.sli)},
        "alerting": {
            "name": slo.alerting.name,
            "labels": slo.alerting.labels,
            "annotations": slo.alerting.annotations,
            "page": _alert(slo.alerting, slo.alerting.page_alert),
            "ticket": _alert(slo.alerting, slo.alerting.ticket_alert),
        },
        "source": source,
    }


def read_sloth(data: dict[str, Any], source: str) -> list[SLOSpec]:
    """The SLOs of a parsed Sloth ``prometheus/v1`` file; SlothError (a ValueError) listing every
    problem as ``key.path: problem`` (load_slos puts the file name in front)."""
    if not isinstance(data, dict):
        raise SlothError(source, [f"<top>: a Sloth file is a mapping, not {type(data).__name__}"])
    unsupported = [key for key in ("slo_plugins",) if key in data]
    problems = [
        f"{key}: Sloth SLO plugins are not supported (they are Go code burnline cannot run)"
        for key in unsupported
    ]
    try:
        spec = SlothSpec.model_validate({k: v for k, v in data.items() if k not in unsupported})
    except ValidationError as exc:
        raise SlothError(source, problems + _validation_problems("", exc)) from None
    if problems:
        raise SlothError(source, problems)
    slos: list[SLOSpec] = []
    seen: set[str] = set()
    for index, slo in enumerate(spec.slos):
        if slo.name in seen:
            problems.append(f"slos[{index}].name: {slo.name!r} is used by another SLO of this file")
            continue
        seen.add(slo.name)
        try:
            slos.append(SLOSpec.model_validate(to_slo_dict(spec, slo, source)))
        except ValidationError as exc:
            problems += _validation_problems(f"slos[{index}]", exc)
    if problems:
        raise SlothError(source, problems)
    return slos
