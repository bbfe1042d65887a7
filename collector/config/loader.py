"""Reads a config file: YAML, ``${VAR}`` substitution, validation with errors that say where.

Every problem found is reported at once, each line naming the file, the key path and what is wrong,
so one `burnline validate` run shows everything to fix. A value that came from a variable is named
with the variable and what it held (``"ten" (from ${MAXC}) is not a valid integer``): the file alone
does not show it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from collector.config.model import Config
from collector.config.yaml_text import load_yaml
from collector.core.component import component_class, component_types, type_of
from collector.core.model import Signal


class ConfigError(Exception):
    """An invalid configuration. ``str()`` is the whole message, one problem a line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid configuration:"] + [f"  {p}" for p in problems]
        super().__init__("\n".join(lines) if len(problems) > 1 else f"{source}: {problems[0]}")


# ${VAR}, ${VAR:-default}, ${env:VAR} (the OpenTelemetry Collector's form) and $$ for a literal $.
_VAR = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# The admin endpoint's variable: applies to a file without an `admin:` section too (the built-in
# default names it in its YAML), so one setting moves the admin server of any config.
ADMIN_ENDPOINT_VARIABLE = "BURNLINE_ADMIN_ENDPOINT"


@dataclass(slots=True)
class _Expansion:
    """What substitution did: the problems it found and, per key path, the text a value came from."""

    env: Mapping[str, str]
    problems: list[str] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)


def _substitute(text: str, path: str, expansion: _Expansion) -> str:
    env = expansion.env

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        expansion.problems.append(
            f"{path or '<top>'}: environment variable {name} is not set "
            f"(write ${{{name}:-default}} to give a default)"
        )
        return ""

    return _VAR.sub(repl, text)


def _expand(value: Any, path: str, expansion: _Expansion) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value
        expanded = _substitute(value, path, expansion)
        if any(m.group(0) != "$$" for m in _VAR.finditer(value)):
            expansion.origins[path] = value
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
        return {k: _expand(v, _join(path, str(k)), expansion) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", expansion) for i, v in enumerate(value)]
    return value


def expand_value(value: Any, path: str, source: str, env: Mapping[str, str] | None = None) -> Any:
    """Substitutes the variables of one value of a file (and nothing else); ConfigError naming the
    path when a variable is unset. For readers that need one setting, not the whole config."""
    expansion = _Expansion(os.environ if env is None else env)
    expanded = _expand(value, path, expansion)
    if expansion.problems:
        raise ConfigError(source, expansion.problems)
    return expanded


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path or "<top>"


def _from_variable(value: Any, origin: str, error: Any) -> str:
    """``"ten" (from ${MAXC}) is not a valid integer``: the value, where it came from, the problem."""
    shown = json.dumps(value) if isinstance(value, str | int | float | bool) else repr(value)
    msg = str(error["msg"])
    head = f"{shown} (from {origin})"
    if msg.startswith("Input should be a valid "):
        return f"{head} is not a valid {msg.removeprefix('Input should be a valid ').split(',')[0]}"
    if msg.startswith("Input should be "):
        return f"{head} should be {msg.removeprefix('Input should be ')}"
    described = _describe(error)
    if isinstance(value, str) and repr(value) in described:  # the message quotes the value already
        return f"{described} (the value came from {origin})"
    return f"{head}: {described}"


def _origin(path: str, origins: Mapping[str, str]) -> tuple[str, str] | None:
    """The substituted value at ``path`` or above it (pydantic may add union tags below a key)."""
    for candidate, origin in origins.items():
        if path == candidate or path.startswith((candidate + ".", candidate + "[")):
            return candidate, origin
    return None


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


def _validation_problems(
    prefix: str, exc: ValidationError, origins: Mapping[str, str] | None = None
) -> list[str]:
    out = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        # "unknown key" errors point at the key itself; name it as the last path element.
        path = _loc(prefix, loc)
        found = _origin(path, origins or {})
        if found is not None and error["type"] not in ("extra_forbidden", "missing"):
            where, origin = found
            out.append(f"{where}: {_from_variable(error.get('input'), origin, error)}")
        else:
            out.append(f"{path}: {_describe(error)}")
    return out


def _validate_component(
    kind: str, section: str, cid: str, raw: Any, problems: list[str], *, origins: Mapping[str, str]
) -> Any:
    ctype = type_of(cid)
    cls = component_class(kind, ctype)
    if cls is None:
        names = ", ".join(sorted(component_types(kind))) or "none"
        problems.append(f"{section}.{cid}: unknown {kind} type {ctype!r} (known: {names})")
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{section}.{cid}: must be a mapping of settings, not {type(raw).__name__}")
        return None
    model: type[BaseModel] = cls.config_model
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_validation_problems(f"{section}.{cid}", exc, origins))
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
                cls = component_class(kind, type_of(cid))
                if cls is not None and kind != "processor" and signal not in cls.signals:
                    supported = ", ".join(sorted(s.value for s in cls.signals))
                    problems.append(f"{where}: {kind} {cid!r} does not handle {signal} (only {supported})")


_SECTIONS = (("receivers", "receiver"), ("processors", "processor"), ("exporters", "exporter"))


def _default_admin_endpoint(data: dict[Any, Any], expansion: _Expansion) -> None:
    """BURNLINE_ADMIN_ENDPOINT moves the admin server of a file that has no ``service.admin``."""
    endpoint = expansion.env.get(ADMIN_ENDPOINT_VARIABLE)
    service = data.get("service")
    if not endpoint or not isinstance(service, dict) or "admin" in service:
        return
    data["service"] = {**service, "admin": {"endpoint": endpoint}}
    expansion.origins["service.admin.endpoint"] = f"${{{ADMIN_ENDPOINT_VARIABLE}}}"


def unused_components(config: Config) -> list[str]:
    """``receivers.x``-style paths of the components no pipeline lists (``run`` does not start them)."""
    out = []
    for section in ("receivers", "processors", "exporters"):
        used = {cid for p in config.service.pipelines.values() for cid in getattr(p, section)}
        defined: dict[str, Any] = getattr(config, section)
        out += [f"{section}.{cid}" for cid in defined if cid not in used]
    return out


def parse_config(data: Any, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Validates already-parsed YAML; raises ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping (receivers:, exporters:, service:)"])
    expansion = _Expansion(os.environ if env is None else env)
    data = _expand(data, "", expansion)
    _default_admin_endpoint(data, expansion)
    problems, origins = expansion.problems, expansion.origins
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems("", exc, origins)
        # The components' own problems too, so that one run shows everything to fix.
        for section, kind in _SECTIONS:
            components = data.get(section)
            if isinstance(components, dict):
                for cid, settings in components.items():
                    _validate_component(kind, section, str(cid), settings, problems, origins=origins)
        raise ConfigError(source, problems) from None
    config.source = source
    for section, kind in _SECTIONS:
        raw: dict[str, Any] = getattr(config, section)
        for cid in list(raw):
            raw[cid] = _validate_component(kind, section, cid, raw[cid], problems, origins=origins)
    _check_pipelines(config, problems)
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Loads a config file, or the built-in default when path is None."""
    data, source = read_config_file(path)
    return parse_config(data, source, env)


def read_config_file(path: str | Path | None) -> tuple[dict[Any, Any], str]:
    """The file's YAML as data (variables not substituted, nothing validated) and its name for
    messages; the built-in default when path is None. ConfigError when it is not a YAML mapping."""
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
        data = load_yaml(text)
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
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping (receivers:, exporters:, service:)"])
    return data, source
