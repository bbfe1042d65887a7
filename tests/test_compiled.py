"""collector/compiled.py: the hot path compiled by mypyc, loaded only while it matches its sources."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector import compiled

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
MODULES = ("pkg.a", "pkg.sub.b")


def _tree(root: Path) -> None:
    for module in MODULES:
        source = compiled.source_path(module, root)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"NAME = {module!r}\n")


def _build_fake(root: Path) -> None:
    for module in MODULES:
        compiled.source_path(module, root).with_suffix(SUFFIX).write_bytes(b"")
    manifest = compiled.manifest_path(root)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(compiled.digests(root, MODULES)))


def test_stale_reason_names_what_keeps_the_compiled_modules_out(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert compiled.stale_reason(tmp_path, MODULES, None) == "not built"
    _build_fake(tmp_path)
    assert compiled.stale_reason(tmp_path, MODULES, None) is None
    # The library the compiled modules share (mypyc's group) must be there as well.
    missing_library = compiled.stale_reason(tmp_path, MODULES, "pkg.lib")
    assert missing_library == "without their shared library pkg.lib__mypyc"
    compiled.source_path("pkg.lib__mypyc", tmp_path).with_suffix(SUFFIX).write_bytes(b"")
    assert compiled.stale_reason(tmp_path, MODULES, "pkg.lib") is None
    source = compiled.source_path("pkg.sub.b", tmp_path)
    source.write_text(source.read_text() + "# edited\n")
    assert compiled.stale_reason(tmp_path, MODULES, None) == "edited since the build: pkg.sub.b"
    _build_fake(tmp_path)
    compiled.source_path("pkg.a", tmp_path).with_suffix(SUFFIX).unlink()
    assert compiled.stale_reason(tmp_path, MODULES, None) == "not all built: pkg.a"
    compiled.manifest_path(tmp_path).unlink()
    assert "missing or unreadable" in (compiled.stale_reason(tmp_path, MODULES, None) or "")
    # A module compiled by an earlier build and taken off the list since would still shadow its
    # source: its extension makes the build stale too.
    _build_fake(tmp_path)
    assert compiled.stale_reason(tmp_path, MODULES[:1], None) == (
        "built for a list of modules that has changed since: pkg.sub.b"
    )


def test_digests_are_the_sources_sha256(tmp_path: Path) -> None:
    _tree(tmp_path)
    expected = hashlib.sha256(b"NAME = 'pkg.a'\n").hexdigest()
    assert compiled.digests(tmp_path, MODULES)["pkg.a"] == expected


def _where(env: dict[str, str], pythonpath: Path | None = None) -> dict[str, str | None]:
    """Where each compiled module was loaded from in a new process, and why not compiled."""
    script = (
        "import json, importlib, collector.compiled as c\n"
        "files = {m: importlib.import_module(m).__file__ for m in c.MODULES}\n"
        "print(json.dumps({'files': files, 'not_used': c.not_used}))\n"
    )
    run_env = {**os.environ, **env}
    if pythonpath is not None:
        run_env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
        cwd=pythonpath or compiled.ROOT,
        timeout=120,
    )
    found: dict[str, str | None] = json.loads(done.stdout)
    found["stderr"] = done.stderr
    return found


def test_pure_python_on_request() -> None:
    found = _where({compiled.PURE_ENV: "1"})
    files = found["files"]
    assert isinstance(files, dict) and all(path.endswith(".py") for path in files.values())
    assert found["not_used"] == "BURNLINE_PURE_PYTHON is set"


def test_the_hot_path_is_compiled_wherever_it_can_be() -> None:
    """`make compiled` ignores a failed build, since pure Python is a form burnline supports; so on
    a machine that has all it takes, a build broken by a change would otherwise show only as the
    compiled-only tests below being skipped."""
    missing = compiled.missing_prerequisite()
    if missing is not None:
        pytest.skip(f"cannot compile here: {missing}")
    reason = compiled.stale_reason()
    assert reason is None, f"the compiled modules are not in use ({reason}): read `make compiled`'s output"


def test_a_missing_compiler_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sysconfig

    monkeypatch.setattr(
        sysconfig, "get_config_var", lambda name: "no-such-cc -pthread" if name == "CC" else None
    )
    assert compiled.missing_prerequisite() == "no C compiler (no-such-cc is not on PATH)"


built = pytest.mark.skipif(
    compiled.stale_reason() is not None,
    reason=f"the compiled modules are not in use here: {compiled.stale_reason()}",
)


@built
def test_the_compiled_modules_load_when_current() -> None:
    found = _where({compiled.PURE_ENV: ""})
    files = found["files"]
    assert isinstance(files, dict) and all(path.endswith(SUFFIX) for path in files.values())
    assert found["not_used"] is None


@built
def test_an_edited_source_turns_every_compiled_module_off(tmp_path: Path) -> None:
    """A copy of the built tree with one source edited: all of them load from source, with a
    warning, rather than the stale compiled module (or a mix of compiled and source)."""
    for package in ("collector", "exporters"):
        shutil.copytree(
            compiled.ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    edited = compiled.source_path("exporters.elasticsearch.ecs", tmp_path)
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    found = _where({compiled.PURE_ENV: ""}, pythonpath=tmp_path)
    files = found["files"]
    assert isinstance(files, dict)
    assert all(path.endswith(".py") and path.startswith(str(tmp_path)) for path in files.values())
    assert found["not_used"] == "edited since the build: exporters.elasticsearch.ecs"
    assert "running the hot path as pure Python" in (found["stderr"] or "")


EQUIVALENCE = r"""
import json, math, orjson
from collector.core.model import Batch, Scope, Signal, Span, SpanEvent
from collector.exporterhelper import batch_codec
from collector.normalize.fluent import normalize_fluent
from collector.normalize.fluent_config import FluentNormalizeConfig
from exporters.elasticsearch.bulk import encode_request
from exporters.elasticsearch.config import DataStreamConfig

pod = {"pod_name": "cart-1", "namespace_name": "shop", "container_name": "cart", "docker_id": "ab" * 32,
       "labels": {"app.kubernetes.io/name": "cart", "tier": "web"}, "annotations": {"a": "b"}}
records = [
    {"log": '{"level":"error","msg":"boom","trace_id":"0af7651916cd43dd8448eb211c80319c","n":3}\n',
     "stream": "stderr", "kubernetes": pod},
    {"log": "WARNING: disk at 91%", "stream": "stdout", "kubernetes": pod},
    {"message": "plain", 1: "integer key", "nan": math.nan, "big": 2**70, b"bin": b"\xff",
     "nested": {"x": [1, 2.5, None, {"y": True}]}},
    {"log": "x", "time": "2026-12-07T10:00:00.123456789Z", "level": 50, "span_id": "00f067aa0ba902b7"},
    "not a map",
]
out = normalize_fluent("kube.var.log", [(1_700_000_000_000_000_000 + i, r) for i, r in enumerate(records)],
                       FluentNormalizeConfig(), 1_800_000_000_000_000_000, [])
request, failed = encode_request(Signal.LOGS, out, DataStreamConfig())
resource = {"service.name": "cart", "k8s.pod.name": "cart-1"}
scope = Scope("io.opentelemetry.aiohttp", "1.0", {"x": 1})
spans = [
    Span("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "GET /items", 1_700_000_000_000_000_000,
         1_700_000_000_250_000_000, kind=2,
         attributes={"http.response.status_code": 503, "url.path": "/items"}, status_code=2,
         status_message="upstream", resource=resource, scope=scope,
         events=[SpanEvent(1_700_000_000_100_000_000, "retry", {"n": 2})]),
    Span("0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7", "SELECT", 1_700_000_000_010_000_000,
         1_700_000_000_020_000_000, parent_span_id="b7ad6b7169203331", kind=3,
         attributes={"db.system": "postgresql", "list": [1, 2]}, resource=resource, scope=scope),
]
span_request, span_failed = encode_request(Signal.TRACES, spans, DataStreamConfig())
rows = [batch_codec.encode(Batch(Signal.LOGS, out, 1)), batch_codec.encode(Batch(Signal.TRACES, spans, 1))]
print(json.dumps({
    "records": [repr(r) for r in out],
    "items": [(i.index, i.doc_id, i.action.decode(), i.source.decode()) for i in request.items],
    "failed": [reason for _, reason in failed],
    "spans": [(i.index, i.doc_id, i.source.decode()) for i in span_request.items],
    "span_failed": [reason for _, reason in span_failed],
    "rows": [row.hex() for row in rows],
    "read_back": [repr(batch_codec.decode(row).items) for row in rows],
}))
"""


@built
def test_compiled_and_pure_python_give_the_same_records_and_documents() -> None:
    def run(pure: str) -> object:
        done = subprocess.run(
            [sys.executable, "-c", EQUIVALENCE],
            env={**os.environ, compiled.PURE_ENV: pure},
            capture_output=True,
            text=True,
            check=True,
            cwd=compiled.ROOT,
            timeout=120,
        )
        return json.loads(done.stdout)

    pure, native = run("1"), run("")
    assert native == pure
    assert isinstance(native, dict) and len(native["items"]) == 5 and not native["failed"]
    assert len(native["spans"]) == 2 and not native["span_failed"] and len(native["read_back"]) == 2
