"""The hot path's modules compiled to C by mypyc, and the guard that loads them only when current.

Normalizing a Fluent record and laying out its ECS document is Python spread over many small
operations (bench/RESULTS.md, "Where a Forward record's CPU goes"). mypyc, the mypy project's
compiler, turns the type-annotated modules in ``MODULES`` into C extensions with the same behaviour:
normalizing takes about a third less CPU, and Forward or Fluent Bit HTTP into Elasticsearch move
about a tenth more records per CPU-second end to end (bench/RESULTS.md, "The hot path compiled by
mypyc").

``make compiled`` (which ``make run`` and ``make test`` run first) calls ``main(["build"])``: it
compiles them next to their sources and records each source's SHA-256 in ``MANIFEST``. Without a C
compiler the build says so and burnline runs as pure Python: the same code, only slower.

A compiled module found beside its source shadows it, so a source edited since the build would
silently not run. :func:`guard` (called by the ``collector`` and ``exporters`` packages before any
of these modules is imported) compares the manifest with the sources, and when any differs, or
``BURNLINE_PURE_PYTHON`` is set, makes every one of them load from its source instead: all or
none, because compiled modules call each other's compiled functions directly.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Modules compiled together, each one file: what a log record or span costs between its decoding
# and its bulk item, the queue row, and a remote-write sample's conversion and exposition. Not the
# pydantic config models (mypyc cannot compile their class bodies), nor record_time (EventTime
# subclasses int, which mypyc does not implement), nor exporters/elasticsearch/bulk.py (its request
# class derives from an interpreted ABC; its per-record loop is bulk_items.py, listed), nor the OTLP
# decoding (upb's message access, not Python, is most of its cost).
MODULES: tuple[str, ...] = (
    "collector.core.trace_ids",
    "collector.normalize.values",
    "collector.normalize.severity",
    "collector.normalize.fluent_resource",
    "collector.normalize.fluent",
    "collector.normalize.raw_key_values",
    "exporters.elasticsearch.ecs_fields",
    "exporters.elasticsearch.ecs",
    "exporters.elasticsearch.log_source",
    "exporters.elasticsearch.span_source",
    "exporters.elasticsearch.bulk_items",
    "collector.exporterhelper.batch_codec",
    "collector.receivers.remote_write.convert",
    "exporters.prometheus.translator",
)
# Where mypyc puts the C runtime the compiled modules share (a module of the collector package).
GROUP = "collector.hot_path"
ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "collector" / "compiled-manifest.json"
PURE_ENV = "BURNLINE_PURE_PYTHON"

# Why the compiled modules are not in use in this process (None: they are, when built).
not_used: str | None = None


def source_path(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digests(root: Path = ROOT, modules: Sequence[str] = MODULES) -> dict[str, str]:
    return {m: hashlib.sha256(source_path(m, root).read_bytes()).hexdigest() for m in modules}


def manifest_path(root: Path) -> Path:
    return root / MANIFEST.relative_to(ROOT)


def stale_reason(
    root: Path = ROOT, modules: Sequence[str] = MODULES, group: str | None = GROUP
) -> str | None:
    """Why the compiled modules under ``root`` must not be loaded, or None when they match their
    sources (or when none were built: then there is nothing to shadow them). ``group``: the module
    whose library they share, which must be there too."""
    manifest = manifest_path(root)
    built = [m for m in modules if _extensions(source_path(m, root))]
    if not built:
        return "not built" if not manifest.exists() else "no compiled module is left"
    recorded = _recorded(root)
    if not recorded:
        return f"{manifest.name} is missing or unreadable"
    dropped = sorted(m for m in recorded if m not in modules and _extensions(source_path(m, root)))
    if dropped:
        return f"built for a list of modules that has changed since: {', '.join(dropped)}"
    current = digests(root, modules)
    added = sorted(m for m in modules if m not in recorded)
    if added:
        return f"not built yet: {', '.join(added)}"
    changed = sorted(m for m in modules if recorded[m] != current[m])
    if changed:
        return f"edited since the build: {', '.join(changed)}"
    if len(built) != len(modules):
        return f"not all built: {', '.join(sorted(set(modules) - set(built)))}"
    if group is not None and not _extensions(source_path(f"{group}__mypyc", root)):
        return f"without their shared library {group}__mypyc"
    return None


def _extensions(source: Path) -> list[Path]:
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return [source.with_suffix(s) for s in suffixes if source.with_suffix(s).exists()]


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their ``.py`` files, never from an extension beside them."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def guard() -> None:
    """Makes the compiled modules load only when they match their sources (see the docstring)."""
    global not_used
    if any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        return
    reason = "BURNLINE_PURE_PYTHON is set" if os.environ.get(PURE_ENV) else stale_reason()
    not_used = reason
    if reason is None or reason == "not built":
        return
    if reason != "BURNLINE_PURE_PYTHON is set":
        logging.getLogger("burnline").warning(
            "running the hot path as pure Python (its compiled modules: %s; `make compiled` rebuilds them)",
            reason,
        )
    listed = {*MODULES, *_recorded()}
    sources = {m: source_path(m) for m in listed if source_path(m).exists()}
    sys.meta_path.insert(0, _SourceFirst(sources))


def _recorded(root: Path = ROOT) -> dict[str, str]:
    try:
        recorded = json.loads(manifest_path(root).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def missing_prerequisite() -> str | None:
    """What this machine lacks to compile the modules (a C compiler, Python's headers, mypyc), or
    None when it has everything: then a failed build is a fault to report, not a machine to live with."""
    import shutil  # here: every burnline process imports this module, only `make` builds
    import sysconfig

    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler} is not on PATH)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers} is missing)"
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (the compile extra: `make` installs it)"
    return None


def build(root: Path = ROOT) -> int:
    """Compiles ``MODULES`` beside their sources; 0 when built (or already current), 1 when not."""
    import shutil
    import subprocess
    import tempfile

    if stale_reason(root) is None:
        print("burnline: the compiled modules are current")
        return 0
    missing = missing_prerequisite()
    if missing is not None:
        print(f"burnline: cannot compile the hot path here, {missing}; running it as pure Python")
        return 1
    # Every extension in the tree is an earlier build's (burnline has no other): a module taken off
    # the list must not stay compiled beside its source.
    for package in ("collector", "exporters"):
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            for old in (root / package).rglob(f"*{suffix}"):
                old.unlink()
    manifest_path(root).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="burnline-mypyc-") as work:
        # From a directory of its own: setup() would read the project's pyproject.toml otherwise, and
        # mypyc's C files and objects stay out of the tree.
        script = Path(work) / "setup.py"
        paths = [str(source_path(m, root)) for m in MODULES]
        script.write_text(
            "from setuptools import setup\n"
            "from mypyc.build import mypycify\n"
            f"setup(name='burnline-compiled', ext_modules=mypycify({paths!r} + ['--ignore-missing-imports'],"
            f" opt_level='3', group_name={GROUP!r}))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, str(script), "build_ext", "--build-lib", "out"],
            check=False,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            print(f"burnline: mypyc could not compile the hot path; running as pure Python:\n{tail}")
            return 1
        out = Path(work) / "out"
        for built in out.rglob("*.so"):
            target = root / built.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, target)
    unbuilt = [m for m in MODULES if not _extensions(source_path(m, root))]
    if unbuilt:
        print(f"burnline: mypyc built no extension for {', '.join(unbuilt)}; running as pure Python")
        return 1
    manifest_path(root).write_text(json.dumps(digests(root), indent=1, sort_keys=True) + "\n")
    print(f"burnline: compiled {len(MODULES)} modules with mypyc")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["build"]:
        return build()
    if args == ["status"]:  # exits 1 when they would not be used, as the image's build checks
        reason = stale_reason()
        print("compiled modules in use" if reason is None else f"pure Python: {reason}")
        return 0 if reason is None else 1
    print("usage: main(['build']) or main(['status'])", file=sys.stderr)
    return 2
