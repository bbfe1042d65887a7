"""`burnline run` start-up failures through the real process: exit 1, one line naming the component, the
config key and (for the built-in config) the environment variable, no traceback (issue 10, case 7)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import load_config, parse_config
from collector.core.service import Service
from collector.core.startup_errors import StartupError, check_data_dir, variables_by_key
from tests.support import BUILT_IN_ENDPOINTS, free_port

PORT_VARIABLES = (*BUILT_IN_ENDPOINTS, "BURNLINE_ADMIN_ENDPOINT")


def built_in_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {**os.environ, **{name: f"127.0.0.1:{free_port()}" for name in PORT_VARIABLES}}
    env["BURNLINE_DATA_DIR"] = str(data_dir)
    env.update(overrides)
    return env


def run(
    env: dict[str, str],
    config: Path | None = None,
    cwd: Path | None = None,
    preexec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "collector", "run"] + (["-c", str(config)] if config else [])
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=preexec, check=False
    )


def error_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in out.stderr, out.stderr
    return [line for line in out.stderr.splitlines() if " ERROR " in line or line.startswith("burnline:")]


@contextmanager
def listening() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


@pytest.mark.parametrize(
    ("variable", "component", "key"),
    [
        ("BURNLINE_FORWARD_ENDPOINT", "receivers.forward", "receivers.forward.endpoint"),
        ("BURNLINE_OTLP_GRPC_ENDPOINT", "receivers.otlp", "receivers.otlp.grpc.endpoint"),
        ("BURNLINE_OTLP_HTTP_ENDPOINT", "receivers.otlp", "receivers.otlp.http.endpoint"),
        ("BURNLINE_ADMIN_ENDPOINT", "service.admin", "service.admin.endpoint"),
    ],
)
def test_port_in_use_names_component_key_and_variable(
    tmp_path: Path, variable: str, component: str, key: str
) -> None:
    with listening() as port:
        out = run(built_in_env(tmp_path / "data", **{variable: f"127.0.0.1:{port}"}))
    assert out.returncode == 1, out.stderr
    lines = error_lines(out)
    assert len(lines) == 1, out.stderr
    assert lines[0].endswith(f"cannot start: {component}: 127.0.0.1:{port} is in use ({key}, {variable})")


def test_port_in_use_in_a_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "burnline.yaml"
    with listening() as port:
        config.write_text(
            yaml.safe_dump(
                {
                    "receivers": {"fluentbit_http": {"endpoint": f"127.0.0.1:{port}"}},
                    "exporters": {"local": {"path": str(tmp_path / "data" / "b.db")}},
                    "service": {
                        "data_dir": str(tmp_path / "data"),
                        "admin": {"endpoint": f"127.0.0.1:{free_port()}"},
                        "pipelines": {"logs": {"receivers": ["fluentbit_http"], "exporters": ["local"]}},
                    },
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if k != "BURNLINE_ADMIN_ENDPOINT"}
        out = run(env, config)
    assert out.returncode == 1
    [line] = error_lines(out)
    assert line.endswith(
        f"receivers.fluentbit_http: 127.0.0.1:{port} is in use (receivers.fluentbit_http.endpoint)"
    )


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")
    out = run(built_in_env(data))
    assert out.returncode == 1
    [line] = error_lines(out)
    assert line.endswith(f"data_dir {data} is not a directory (service.data_dir, BURNLINE_DATA_DIR)")


def test_data_dir_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run(built_in_env(blocker / "data"))
    assert out.returncode == 1
    [line] = error_lines(out)
    assert line.endswith(
        f"data_dir {blocker / 'data'} cannot be created: {blocker} is not a directory "
        "(service.data_dir, BURNLINE_DATA_DIR)"
    )


def test_local_store_path_that_sqlite_cannot_open(tmp_path: Path) -> None:
    """SQLite's "unable to open database file" (the path is a directory) said with the key."""
    store = tmp_path / "store.db"
    store.mkdir()
    config = tmp_path / "burnline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "receivers": {"forward": {"endpoint": f"127.0.0.1:{free_port()}"}},
                "exporters": {"local": {"path": "${STORE}"}},
                "service": {
                    "data_dir": str(tmp_path / "data"),
                    "admin": {"endpoint": f"127.0.0.1:{free_port()}"},
                    "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["local"]}},
                },
            }
        )
    )
    env = {**os.environ, "STORE": str(store)}
    env.pop("BURNLINE_ADMIN_ENDPOINT", None)
    out = run(env, config)
    assert out.returncode == 1
    [line] = error_lines(out)
    assert f"exporters.local: cannot open {store}: " in line
    assert line.endswith("(exporters.local.path, STORE)")


def _nobody() -> tuple[int, int] | None:
    """A user other than root to run as (root writes anywhere, so only another user sees EACCES)."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None
    return entry.pw_uid, entry.pw_gid


def test_data_dir_without_permission() -> None:
    user = _nobody()
    if user is None:
        pytest.skip("no unprivileged user to run as: root may write anywhere")
    uid, gid = user
    # Not under pytest's tmp_path: its parents are private to root, and the other user must reach the
    # directory to be refused by its own mode.
    base = Path(tempfile.mkdtemp(prefix="burnline-perm-"))
    try:
        base.chmod(0o755)
        data = base / "data"
        data.mkdir(mode=0o555)
        data.chmod(0o555)  # readable, not writable, whoever the process runs as (but root)

        def drop() -> None:
            if os.geteuid() == 0:
                os.setgid(gid)
                os.setuid(uid)

        try:
            out = run(built_in_env(data, HOME=str(base)), cwd=base, preexec=drop)
        except PermissionError as exc:  # the interpreter lives where only root may go (pyenv under /root)
            pytest.skip(f"user {uid} cannot run this checkout's Python ({exc}); root writes anywhere")
        if "Permission denied" in out.stderr and "collector" in out.stderr and "data_dir" not in out.stderr:
            pytest.skip(f"the unprivileged user cannot run this checkout's Python: {out.stderr[-300:]}")
        assert out.returncode == 1, out.stderr
        [line] = error_lines(out)
        assert line.endswith(
            f"data_dir {data}: no permission to write {data} (service.data_dir, BURNLINE_DATA_DIR)"
        )
    finally:
        (base / "data").chmod(0o755)
        for child in sorted(base.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        base.rmdir()


# In-process: the files burnline keeps under data_dir, and the permission wording root cannot see.


def _service_config(data_dir: Path, **extra: Any) -> Any:
    data: dict[str, Any] = {
        "receivers": {"inject": {}},
        "exporters": {"capture": {}},
        "service": {
            "data_dir": str(data_dir),
            "admin": {"endpoint": f"127.0.0.1:{free_port()}"},
            "pipelines": {"logs": {"receivers": ["inject"], "exporters": ["capture"]}},
        },
        **extra,
    }
    return parse_config(data, source="<test>", env={})


async def test_queue_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "queue").write_text("x")
    with pytest.raises(StartupError) as raised:
        await Service(_service_config(tmp_path)).start()
    queue = tmp_path / "queue"
    assert str(raised.value) == f"exporters.capture: {queue} is not a directory (service.data_dir)"


async def test_slo_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "slo").write_text("x")
    slo = {"name": "s", "service": "a", "objective": 99, "sli": {"logs": {"bad": {"severity": ">=error"}}}}
    with pytest.raises(StartupError) as raised:
        await Service(_service_config(tmp_path, slos=[slo])).start()
    assert str(raised.value) == f"slos: {tmp_path / 'slo'} is not a directory (service.data_dir)"


def test_unwritable_data_dir_is_said_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a non-root user sees (root may write anywhere, so the refusal is simulated)."""

    def refuse(**_: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(StartupError) as raised:
        check_data_dir(tmp_path, {"service.data_dir": "BURNLINE_DATA_DIR"})
    assert str(raised.value) == (
        f"data_dir {tmp_path}: no permission to write {tmp_path} (service.data_dir, BURNLINE_DATA_DIR)"
    )


def test_variables_come_from_the_built_in_yaml() -> None:
    variables = variables_by_key(load_config(None, env={}), env={})
    assert variables["receivers.forward.endpoint"] == "BURNLINE_FORWARD_ENDPOINT"
    assert variables["receivers.otlp.grpc.endpoint"] == "BURNLINE_OTLP_GRPC_ENDPOINT"
    assert variables["exporters.local.path"] == "BURNLINE_DATA_DIR"
    assert variables["service.admin.endpoint"] == "BURNLINE_ADMIN_ENDPOINT"
