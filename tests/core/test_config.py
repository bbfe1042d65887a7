"""Config loading: every broken file in tests/configs/invalid/ names its file, key path and problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

import tests.support  # noqa: F401  (registers the test exporter; keeps registries complete)
from collector.cli import main
from collector.config import ConfigError, load_config, parse_config
from collector.config.effective import MASK, is_secret_key, mask_secrets
from collector.config.types import parse_byte_size, parse_duration, split_endpoint
from collector.processors.attributes import AttributesConfig

CONFIGS = Path(__file__).parents[1] / "configs"
INVALID = sorted((CONFIGS / "invalid").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


def test_there_are_at_least_ten_broken_files() -> None:
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_names_file_key_and_problem(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message.splitlines()[0]
    assert expected_message(path) in message


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_validate_command_exits_1_on_invalid_file(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", str(path)]) == 1
    assert expected_message(path) in capsys.readouterr().err


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the file: No such file"):
        load_config(CONFIGS / "nope.yaml")


def test_several_problems_are_reported_together() -> None:
    data = {
        "receivers": {"forward": {"endpont": "x"}},
        "exporters": {"local": {"batch": {"max_records": 0}}},
        "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["nowhere"]}}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "multi.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == "multi.yaml: invalid configuration:"
    assert "  receivers.forward.endpont: unknown key" in lines
    assert any(line.startswith("  exporters.local.batch.max_records: ") for line in lines)
    assert "  service.pipelines.logs.exporters[0]: exporter 'nowhere' is not defined under exporters" in lines


def test_valid_file_with_substitution(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"TENANT_B_PORT": "24225"}
    config = load_config(CONFIGS / "valid" / "full.yaml", env=env)
    assert config.receivers["forward"].endpoint == "127.0.0.1:24224"  # default applied
    assert config.receivers["forward/tenant-b"].endpoint == "127.0.0.1:24225"
    assert config.exporters["local"].batch.flush_interval == pytest.approx(0.2)
    assert config.exporters["local"].queue.max_bytes == 64 * 1024**2
    assert config.service.shutdown_grace_period == 90.0
    assert isinstance(config.processors["attributes/cluster"], AttributesConfig)
    monkeypatch.setenv("TENANT_B_PORT", "24225")
    assert main(["validate", "-c", str(CONFIGS / "valid" / "full.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid (3 receiver(s), 2 processor(s), 1 exporter(s), 1 pipeline(s), 0 SLO(s))" in out


def test_builtin_default_is_valid() -> None:
    config = load_config(None, env={})
    assert config.receivers["forward"].endpoint == "0.0.0.0:24224"
    assert config.service.pipelines["logs"].exporters == ["local"]


def test_substitution_forms() -> None:
    base = {
        "exporters": {"capture": {"concurrency": "${N}", "queue": {"max_bytes": "${SIZE:-1MiB}"}}},
        "receivers": {"forward": {"endpoint": "$${literal}:${PORT}"}},
        "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["capture"]}}},
    }
    config = parse_config(base, env={"N": "3", "PORT": "1"})
    assert config.receivers["forward"].endpoint == "${literal}:1"  # $$ is a literal $, not a variable
    base["receivers"] = {"forward": {"endpoint": "${env:HOST}:${PORT}"}}
    config = parse_config(base, env={"N": "3", "PORT": "2424", "HOST": "127.0.0.1"})
    assert config.exporters["capture"].concurrency == 3  # a whole-value variable keeps its YAML type
    assert config.exporters["capture"].queue.max_bytes == 1024**2
    assert config.receivers["forward"].endpoint == "127.0.0.1:2424"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("1m30s", 90), ("2h", 7200), ("30d", 2592000), (15, 15), ("1.5s", 1.5)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-1s", "1s2", True, -3])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("4MiB", 4 * 1024**2), ("4MB", 4_000_000), ("512KiB", 524288), (100, 100), ("1gib", 1024**3)],
)
def test_parse_byte_size(text: object, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize(
    ("endpoint", "parts"), [("0.0.0.0:24224", ("0.0.0.0", 24224)), ("[::1]:4317", ("::1", 4317))]
)
def test_split_endpoint(endpoint: str, parts: tuple[str, int]) -> None:
    assert split_endpoint(endpoint) == parts


@pytest.mark.parametrize("endpoint", [":80", "host:99999", "host", "host:http"])
def test_split_endpoint_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError):
        split_endpoint(endpoint)


# ---------------------------------------------------------------------------------------------------
# Values from variables name the variable and the value (issue 10 case 11)

VARIABLE_TYPES = """\
receivers:
  forward:
    endpoint: 127.0.0.1:${PORT}
    max_connections: ${MAXC}
exporters:
  local:
    batch: {flush_interval: "${FLUSH:-soon}"}
service:
  pipelines:
    logs: {receivers: [forward], exporters: [local]}
"""


def test_a_variable_of_the_wrong_type_names_the_variable_and_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vars.yaml"
    path.write_text(VARIABLE_TYPES)
    monkeypatch.setenv("MAXC", "ten")
    monkeypatch.setenv("PORT", "24224")
    monkeypatch.setenv("FLUSH", "1s")
    assert main(["validate", "-c", str(path)]) == 1
    assert capsys.readouterr().err == (
        f'{path}: receivers.forward.max_connections: "ten" (from ${{MAXC}}) is not a valid integer\n'
    )
    # Several at once; a part of a value, a default, and messages that quote the value themselves.
    monkeypatch.setenv("MAXC", "2.5")
    monkeypatch.setenv("PORT", "http")
    monkeypatch.delenv("FLUSH")
    assert main(["validate", "-c", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{path}: invalid configuration:"
    assert sorted(lines[1:]) == [
        "  exporters.local.batch.flush_interval: 'soon' is not a duration (use e.g. '500ms', '30s', '5m',"
        " '1h30m', '30d') (the value came from ${FLUSH:-soon})",
        "  receivers.forward.endpoint: '127.0.0.1:http' is not host:port (e.g. 0.0.0.0:24224)"
        " (the value came from 127.0.0.1:${PORT})",
        "  receivers.forward.max_connections: 2.5 (from ${MAXC}) is not a valid integer",
    ]


def test_values_written_in_the_file_keep_their_plain_messages() -> None:
    text = VARIABLE_TYPES.replace("${MAXC}", "ten").replace("${PORT}", "1").replace("${FLUSH:-soon}", "1s")
    data = yaml.safe_load(text)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "plain.yaml", env={})
    assert "receivers.forward.max_connections: Input should be a valid integer" in str(info.value)
    assert "from $" not in str(info.value)


# ---------------------------------------------------------------------------------------------------
# BURNLINE_ADMIN_ENDPOINT (issue 10 case 9)

MINIMAL: dict[str, Any] = {
    "receivers": {"forward": {}},
    "exporters": {"local": {}},
    "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["local"]}}},
}


def test_admin_endpoint_variable_applies_to_a_file_without_an_admin_section() -> None:
    env = {"BURNLINE_ADMIN_ENDPOINT": "127.0.0.1:18888"}
    assert parse_config(copy.deepcopy(MINIMAL), env=env).service.admin.endpoint == "127.0.0.1:18888"
    assert parse_config(copy.deepcopy(MINIMAL), env={}).service.admin.endpoint == "0.0.0.0:8888"
    # The file's own admin section wins.
    data = copy.deepcopy(MINIMAL)
    data["service"]["admin"] = {"endpoint": "127.0.0.1:7777"}
    assert parse_config(data, env=env).service.admin.endpoint == "127.0.0.1:7777"
    # The built-in default names the variable in its YAML: same result.
    assert load_config(None, env=env).service.admin.endpoint == "127.0.0.1:18888"
    with pytest.raises(ConfigError) as info:
        parse_config(copy.deepcopy(MINIMAL), "f.yaml", env={"BURNLINE_ADMIN_ENDPOINT": "8888"})
    assert str(info.value) == (
        "f.yaml: service.admin.endpoint: '8888' is not host:port (e.g. 0.0.0.0:24224)"
        " (the value came from ${BURNLINE_ADMIN_ENDPOINT})"
    )


# ---------------------------------------------------------------------------------------------------
# validate warns about unused components (issue 10 case 9)


def test_validate_warns_about_components_no_pipeline_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "unused.yaml"
    path.write_text(
        "receivers:\n  forward: {}\n  fluentbit_http: {}\n"
        "processors:\n  filter: {min_severity: warning}\n"
        "exporters:\n  local: {}\n  capture: {}\n"
        "service:\n  pipelines:\n    logs: {receivers: [forward], exporters: [local]}\n"
    )
    assert main(["validate", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: valid (2 receiver(s), 1 processor(s), 2 exporter(s), 1 pipeline(s), 0 SLO(s))\n"
    assert err.splitlines() == [
        f"{path}: warning: {what}: no pipeline uses it; `run` will not start it"
        for what in ("receivers.fluentbit_http", "processors.filter", "exporters.capture")
    ]
    # A config that uses everything validates without a word on stderr.
    path.write_text(path.read_text().replace("[forward], exporters: [local]", "[forward, fluentbit_http],"
                    " processors: [filter], exporters: [local, capture]"))  # fmt: skip
    assert main(["validate", "-c", str(path)]) == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------------
# burnline config (issue 10, "What to build")

SECRETS_CONFIG = """\
receivers:
  forward:
    endpoint: 127.0.0.1:24224
    security:
      shared_key: ${FORWARD_KEY}
      users: [{username: fluent, password: user-password-1}]
  fluentbit_http:
    endpoint: 127.0.0.1:9880
    username: fb
    password: basic-password-2
exporters:
  elasticsearch:
    endpoints: [http://127.0.0.1:9200]
    api_key: ${ES_API_KEY}
  local: {}
service:
  shutdown_grace_period: 1m30s
  pipelines:
    logs: {receivers: [forward, fluentbit_http], exporters: [elasticsearch, local]}
"""
SECRET_VALUES = ("forward-key-3", "es-api-key-4", "user-password-1", "basic-password-2")


def test_config_command_prints_the_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(SECRETS_CONFIG)
    monkeypatch.setenv("FORWARD_KEY", "forward-key-3")
    monkeypatch.setenv("ES_API_KEY", "es-api-key-4")
    assert main(["config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    for secret in SECRET_VALUES:
        assert secret not in out
    assert out.startswith(f"# effective configuration of {path}: defaults filled in, secrets masked\n")
    doc = yaml.safe_load(out)
    assert doc["exporters"]["elasticsearch"]["api_key"] == MASK  # a plain str, masked by its key
    assert doc["receivers"]["forward"]["security"]["shared_key"] == MASK  # a SecretStr
    assert doc["receivers"]["forward"]["security"]["users"][0] == {"username": "fluent", "password": MASK}
    assert doc["receivers"]["fluentbit_http"]["username"] == "fb"
    assert doc["receivers"]["fluentbit_http"]["bearer_token"] is None  # unset stays visibly unset
    # Variables substituted, defaults filled in, durations in seconds.
    assert doc["service"]["shutdown_grace_period"] == 90.0
    assert doc["exporters"]["local"]["batch"]["max_records"] == 1000
    assert doc["service"]["admin"]["endpoint"] == "0.0.0.0:8888"
    # What it prints is itself a valid config that means the same (secrets aside).
    again = parse_config(doc, "printed", env={})
    assert again.receivers["forward"].endpoint == "127.0.0.1:24224"
    assert again.exporters["local"].batch.flush_interval == 1.0
    assert again.service.shutdown_grace_period == 90.0


def test_config_command_without_a_file_prints_the_builtin_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURNLINE_FORWARD_ENDPOINT", "127.0.0.1:34224")
    assert main(["config"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["receivers"]["forward"]["endpoint"] == "127.0.0.1:34224"
    assert doc["service"]["pipelines"]["logs"]["exporters"] == ["local"]


def test_config_command_on_an_invalid_file_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "invalid" / "bad_duration.yaml"
    assert main(["config", "-c", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and expected_message(path) in err


def test_secret_keys() -> None:
    for key in ("password", "api_key", "bearer_token", "Authorization", "shared_key", "X-Api-Token"):
        assert is_secret_key(key), key
    for key in ("key", "key_file", "username", "token_file", "endpoint", "tls"):
        assert not is_secret_key(key), key
    assert mask_secrets({"headers": {"Authorization": "Bearer x", "Accept": "a"}, "api_key": None}) == {
        "headers": {"Authorization": MASK, "Accept": "a"},
        "api_key": None,
    }
