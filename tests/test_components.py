"""collector/components.py: built-in components are imported only when a configuration names them."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from collector.components import BUILTIN_COMPONENTS
from collector.core.component import component_class, component_types, registered

_FORWARD_TO_ELASTICSEARCH = """
import sys
from collector.cli import build_parser
from collector.config.loader import parse_config
from collector.core.service import Service

build_parser()  # `burnline run` builds the whole command line, the demo's and the queries' too
config = parse_config({
    "receivers": {"forward": {"endpoint": "127.0.0.1:0"}},
    "exporters": {"elasticsearch": {"endpoints": ["http://127.0.0.1:9"]}},
    "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["elasticsearch"]}}},
})
print(" ".join(sorted(m for m in (
    "grpc",
    "google.protobuf",
    "rich",
    "collector.receivers.otlp.receiver",
    "exporters.otlp.exporter",
    "exporters.prometheus.exporter",
    "collector.receivers.forward.receiver",
    "exporters.elasticsearch.exporter",
) if m in sys.modules)))
"""


def test_a_process_imports_only_the_components_its_config_names() -> None:
    # grpcio and the protobuf runtime alone are about 11 MiB of every process and of every worker.
    done = subprocess.run(
        [sys.executable, "-c", _FORWARD_TO_ELASTICSEARCH],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["collector.receivers.forward.receiver", "exporters.elasticsearch.exporter"]


@pytest.mark.parametrize(
    ("kind", "type_name", "module"),
    [(kind, name, module) for kind, types in BUILTIN_COMPONENTS.items() for name, module in types.items()],
)
def test_each_builtin_module_registers_its_type(kind: str, type_name: str, module: str) -> None:
    importlib.import_module(module)
    cls = component_class(kind, type_name)
    assert cls is not None and cls.kind == kind and cls.type_name == type_name
    assert cls.__module__ == module


def test_the_types_a_config_may_name_are_the_registered_ones() -> None:
    for kind in BUILTIN_COMPONENTS:
        assert component_types(kind) == frozenset(registered(kind))
    assert component_class("receiver", "no_such_type") is None
