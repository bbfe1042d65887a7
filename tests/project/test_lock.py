"""The lock: uv.lock pins everything `make test`, `make run` and the Docker image install.

These tests check the three places that install Python packages against the lock itself, so a
release upstream can never change what a fresh machine or the image gets.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker

from collector import compiled

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
                assert "--no-dev" in words, command
                # The compile extra, for mypyc, only before burnline is installed: the last sync is
                # exact and takes it out of the image again.
                extras = [w for w in words if w.startswith("--extra")]
                assert not extras or ("--no-install-project" in words and extras == ["--extra"]), command
                assert not extras or words[words.index("--extra") + 1] == "compile", command


def _context_copy(target: Path) -> None:
    """What deploy/Dockerfile.dockerignore lets into the build context, as its COPY lines lay it out."""
    for name in ("pyproject.toml", "uv.lock", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, target / name)
    for package in ("collector", "exporters"):
        shutil.copytree(
            ROOT / package,
            target / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.py[co]", "*.so", "compiled-manifest.json"),
        )


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "UV_NO_PROGRESS": "1", "UV_LINK_MODE": "copy", **(env or {})},
    )


def _packages(python: Path) -> dict[str, str]:
    listed = _run([str(UV), "pip", "list", "--format", "freeze", "--python", str(python)], cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    return dict(
        (_normalize(name), version)
        for name, _, version in (line.partition("==") for line in listed.stdout.split())
    )


def test_the_image_builder_installs_the_locked_set_with_the_compiled_hot_path(tmp_path: Path) -> None:
    """Runs the builder stage's own commands, in order, on a copy of the build context (uv offline,
    from its cache; this interpreter for the image's): the dependencies with the compile extra, the
    mypyc build in /src, then the exact sync that installs burnline's wheel. The image must hold
    exactly the lock's runtime set at the test venv's versions, and its installed package must load
    the compiled modules (the extensions and the manifest are package data of the wheel)."""
    missing = compiled.missing_prerequisite()
    if missing is not None:
        pytest.skip(f"cannot compile here: {missing}")
    runs = _dockerfile_runs()
    syncs = [run for run in runs if run.startswith("uv sync")]
    assert len(syncs) == 2, syncs
    dependencies, install = syncs
    assert "--no-install-project" in dependencies and "--no-install-project" not in install
    builds = [run for run in runs if "compiled" in run and '"build"' in run]
    assert len(builds) == 1 and runs.index(dependencies) < runs.index(builds[0]) < runs.index(install)
    src, env_dir = tmp_path / "src", tmp_path / "opt" / "burnline"
    src.mkdir()
    _context_copy(src)
    if compiled.stale_reason() is None:
        # The compile itself is `make compiled`'s (test_compiled.py checks what it builds): take its
        # output, so that the builder's command finds it current instead of spending 30 s again.
        for built in [
            *compiled.ROOT.joinpath("collector").rglob("*.so"),
            *compiled.ROOT.joinpath("exporters").rglob("*.so"),
        ]:
            shutil.copy2(built, src / built.relative_to(compiled.ROOT))
        shutil.copy2(compiled.MANIFEST, src / compiled.MANIFEST.relative_to(compiled.ROOT))
    image_env = {"UV_PROJECT_ENVIRONMENT": str(env_dir), "UV_PYTHON_DOWNLOADS": "never"}
    python = env_dir / "bin" / "python"

    result = _run(
        [str(UV), *shlex.split(dependencies)[1:], "--offline", "--python", sys.executable], src, image_env
    )
    assert result.returncode == 0, result.stderr
    assert _packages(python) == _locked("--extra", "compile"), "the builder's packages differ from the lock's"

    build = shlex.split(builds[0])
    assert build[0] == "/opt/burnline/bin/python"
    result = _run([str(python), *build[1:]], src, image_env)
    assert result.returncode == 0, result.stdout + result.stderr

    for command in (c.strip() for c in install.split("&&")):
        words = shlex.split(command)
        if words[0] == "uv":
            result = _run([str(UV), *words[1:], "--offline"], src, image_env)
        else:
            assert words[0].startswith("/opt/burnline/bin/"), command
            # From elsewhere, so that nothing but the installed package can be imported.
            result = _run([str(env_dir / "bin" / Path(words[0]).name), *words[1:]], tmp_path, image_env)
        assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
    assert "compiled modules in use" in result.stdout

    image = _packages(python)
    assert image.pop("burnline") == "0.1.0"
    assert image == _locked(), "the image's packages differ from uv.lock's runtime set (mypy left in?)"
    installed = {_normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {name: installed.get(name) for name in image} == image, "image and `make test` versions differ"
    loaded = _run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib, sys, collector.compiled as c; "
            "print('\\n'.join(importlib.import_module(m).__file__ for m in c.MODULES))",
        ],
        tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr
    files = loaded.stdout.split()
    assert len(files) == len(compiled.MODULES)
    site = str(env_dir / "lib")
    assert all(f.startswith(site) and f.endswith(importlib.machinery.EXTENSION_SUFFIXES[0]) for f in files), (
        files
    )
