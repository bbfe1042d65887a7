"""Config loading: every broken file in tests/configs/invalid/ names its file, key path and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.support  # noqa: F401  (registers the test exporter; keeps registries complete)
from collector.cli import main
from collector.config import ConfigError, load_config, parse_config
from collector.config.types import parse_byte_size, parse_duration, split_endpoint
from collector.processors.attributes import AttributesConfig

CONFIGS = Path(__file__).parent / "configs"
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
    assert "valid (3 receiver(s), 2 processor(s), 1 exporter(s), 1 pipeline(s))" in capsys.readouterr().out


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
