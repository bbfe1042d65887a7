"""The lock: uv.lock pins everything `make test`, `make run` and the Docker image install.

These tests check the three places that install Python packages against the lock itself, so a
release upstream can never change what a fresh machine or the image gets.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
UV = Path(sys.executable).with_name("uv")

pytestmark = pytest.mark.skipif(not UV.exists(), reason=f"uv is not installed beside {sys.executable}")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _uv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UV), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "UV_NO_PROGRESS": "1", **(env or {})},
    )


def _locked(*extra: str) -> dict[str, str]:
    """name -> version of what uv.lock installs for this Python with the given export flags."""
    result = _uv("export", "--frozen", "--no-emit-project", "--no-hashes", "--no-header", *extra)
    assert result.returncode == 0, result.stderr
    pins: dict[str, str] = {}
    for raw in result.stdout.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement, _, marker = line.partition(";")
        name, _, version = requirement.strip().partition("==")
        # Only what applies to the running interpreter and platform.
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        pins[_normalize(name)] = version.strip()
    assert pins, result.stdout
    return pins


def _dockerfile_runs() -> list[str]:
    """The Dockerfile's RUN commands, continuation lines joined."""
    text = DOCKERFILE.read_text("utf-8").replace("\\\n", " ")
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_lock_agrees_with_pyproject() -> None:
    result = _uv("lock", "--check", "--offline")
    assert result.returncode == 0, f"pyproject.toml and uv.lock disagree (run `make lock`):\n{result.stderr}"


def test_the_test_environment_is_exactly_the_locked_set() -> None:
    """`make test` installed every locked package (runtime + test extra) at its locked version."""
    installed = {_normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {
        name: (version, installed.get(name))
        for name, version in _locked("--extra", "test").items()
        if installed.get(name) != version
    }
    assert not wrong, f"locked version != installed version: {wrong}"


def test_requirements_uv_pins_uv_itself_with_hashes() -> None:
    text = (ROOT / "requirements" / "uv.txt").read_text("utf-8")
    pins = re.findall(r"^uv==(\S+)", text, re.MULTILINE)
    assert len(pins) == 1
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", text)) >= 10, "every platform's wheel is hashed"
    version = subprocess.run([str(UV), "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert version.stdout.split()[1] == pins[0], "the venv's uv is not the one requirements/uv.txt pins"


def test_dockerfile_installs_only_from_the_lock() -> None:
    installs = [run for run in _dockerfile_runs() if re.search(r"\b(pip|uv)\b.*\b(install|sync|add)\b", run)]
    assert installs, "the Dockerfile installs nothing?"
    for run in installs:
        for command in (c.strip() for c in run.split("&&")):
            words = shlex.split(command)
            if not words or words[0] not in ("pip", "uv", "python", "/opt/burnline/bin/python"):
                continue
            if words[0] == "pip":
                assert "--require-hashes" in words and words[-1] == "requirements/uv.txt", command
            elif words[0] == "uv":
                assert words[1] == "sync" and "--locked" in words, f"not a locked install: {command}"
                assert "--no-dev" in words and not any(w.startswith("--extra") for w in words), command


def test_dockerfile_installs_the_same_versions_as_make_test(tmp_path: Path) -> None:
    """Runs the Dockerfile's own dependency `uv sync` (offline, from uv's cache) into a scratch venv:
    it must hold exactly the lock's runtime set, at the versions the test venv has."""
    syncs = [shlex.split(run) for run in _dockerfile_runs() if run.startswith("uv sync")]
    assert syncs, "the Dockerfile has no `uv sync`"
    dependencies_only = [words for words in syncs if "--no-install-project" in words]
    assert len(dependencies_only) == 1
    env_dir = tmp_path / "image-venv"
    result = _uv(
        *dependencies_only[0][1:],
        "--offline",
        "--python",
        sys.executable,
        env={"UV_PROJECT_ENVIRONMENT": str(env_dir), "UV_LINK_MODE": "copy"},
    )
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [str(UV), "pip", "list", "--format", "freeze", "--python", str(env_dir / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    image = dict(
        (_normalize(name), version)
        for name, _, version in (line.partition("==") for line in listed.stdout.split())
    )
    assert image == _locked(), "the image's packages differ from uv.lock's runtime set"
    installed = {_normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {name: installed.get(name) for name in image} == image, "image and `make test` versions differ"
