"""Reads a config file: YAML, ``${VAR}`` substitution, validation with errors that say where.

Every problem found is reported at once, each line naming the file, the key path and what is wrong,
so one `burnline validate` run shows everything to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from collector.component import registered, type_of
from collector.config.model import Config
from collector.model import Signal


class ConfigError(Exception):
    """An invalid configuration. ``str()`` is the whole message, one problem a line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid configuration:"] + [f"  {p}" for p in problems]
        super().__init__("\n".join(lines) if len(problems) > 1 else f"{source}: {problems[0]}")


# ${VAR}, ${VAR:-default}, ${env:VAR} (the OpenTelemetry Collector's form) and $$ for a literal $.
_VAR = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(text: str, path: str, env: Mapping[str, str], problems: list[str]) -> str:
    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(
            f"{path or '<top>'}: environment variable {name} is not set "
            f"(write ${{{name}:-default}} to give a default)"
        )
        return ""

    return _VAR.sub(repl, text)


def _expand(value: Any, path: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value
        expanded = _substitute(value, path, env, problems)
        # A value that was only a variable takes the variable's YAML type ("8080" -> 8080, "true").
        if _VAR.fullmatch(value) and expanded:
            try:
                loaded = yaml.safe_load(expanded)
            except yaml.YAMLError:
                return expanded
            if isinstance(loaded, int | float | bool):
                return loaded
        return expanded
    if isinstance(value, dict):
        return {k: _expand(v, _join(path, str(k)), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path or "<top>"


def _describe(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(msg).removeprefix("Value error, ")
    if kind == "too_short" and isinstance(error.get("input"), dict | list):
        return "must not be empty"
    return str(msg)


def _validation_problems(prefix: str, exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        # "unknown key" errors point at the key itself; name it as the last path element.
        out.append(f"{_loc(prefix, loc)}: {_describe(error)}")
    return out


def _validate_component(kind: str, section: str, cid: str, raw: Any, problems: list[str]) -> Any:
    known = registered(kind)
    ctype = type_of(cid)
    if ctype not in known:
        names = ", ".join(sorted(known)) or "none"
        problems.append(f"{section}.{cid}: unknown {kind} type {ctype!r} (known: {names})")
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{section}.{cid}: must be a mapping of settings, not {type(raw).__name__}")
        return None
    model: type[BaseModel] = known[ctype].config_model
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_validation_problems(f"{section}.{cid}", exc))
        return None


def _check_pipelines(config: Config, problems: list[str]) -> None:
    sections = {"receivers": "receiver", "processors": "processor", "exporters": "exporter"}
    for pid, pipeline in config.service.pipelines.items():
        signal_name = type_of(pid)
        if signal_name not in {s.value for s in Signal}:
            problems.append(
                f"service.pipelines.{pid}: a pipeline is named after its signal "
                f"(logs, traces or metrics, optionally /name), not {signal_name!r}"
            )
            continue
        signal = Signal(signal_name)
        for section, kind in sections.items():
            defined: dict[str, Any] = getattr(config, section)
            ids: list[str] = getattr(pipeline, section)
            for dup in sorted({cid for cid in ids if ids.count(cid) > 1}):
                problems.append(f"service.pipelines.{pid}.{section}: lists {kind} {dup!r} more than once")
            for i, cid in enumerate(ids):
                where = f"service.pipelines.{pid}.{section}[{i}]"
                if cid not in defined:
                    problems.append(f"{where}: {kind} {cid!r} is not defined under {section}")
                    continue
                cls = registered(kind).get(type_of(cid))
                if cls is not None and kind != "processor" and signal not in cls.signals:
                    supported = ", ".join(sorted(s.value for s in cls.signals))
                    problems.append(f"{where}: {kind} {cid!r} does not handle {signal} (only {supported})")


def parse_config(data: Any, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Validates already-parsed YAML; raises ConfigError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping (receivers:, exporters:, service:)"])
    data = _expand(data, "", os.environ if env is None else env, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems + _validation_problems("", exc)) from None
    config.source = source
    for section, kind in (("receivers", "receiver"), ("processors", "processor"), ("exporters", "exporter")):
        raw: dict[str, Any] = getattr(config, section)
        for cid in list(raw):
            raw[cid] = _validate_component(kind, section, cid, raw[cid], problems)
    _check_pipelines(config, problems)
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Loads a config file, or the built-in default when path is None."""
    if path is None:
        text = resources.files("collector.config").joinpath("default.yaml").read_text("utf-8")
        source = "<built-in default>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
        except UnicodeDecodeError:
            raise ConfigError(source, ["the file is not UTF-8 text"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark is not None:  # where the broken construct began, often the real culprit
            problem = f"{problem} ({context} that began at line {cmark.line + 1}, column {cmark.column + 1})"
        raise ConfigError(source, [f"{where}YAML syntax error: {problem}"]) from None
    if data is None:
        raise ConfigError(source, ["the file is empty (it needs receivers:, exporters: and service:)"])
    return parse_config(data, source, env)
