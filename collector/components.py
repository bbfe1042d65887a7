"""burnline's built-in components: adding one is a folder plus one line here.

Each module registers its component class with ``@register`` when imported. The core imports a
component's module only when a configuration names its type (``load_component``), so a process
carries only the components it runs: the OTLP receiver and exporter alone bring grpcio and the
protobuf runtime, about 11 MiB of every process and of every worker that never uses them.
"""

from __future__ import annotations

import importlib
from typing import Final

# kind -> type name -> the module that registers it.
BUILTIN_COMPONENTS: Final[dict[str, dict[str, str]]] = {
    "receiver": {
        "forward": "collector.receivers.forward.receiver",
        "fluentbit_http": "collector.receivers.fluentbit_http.receiver",
        "otlp": "collector.receivers.otlp.receiver",
        "prometheus_scrape": "collector.receivers.prometheus_scrape.receiver",
        "remote_write": "collector.receivers.remote_write.receiver",
    },
    "processor": {
        "attributes": "collector.processors.attributes",
        "filter": "collector.processors.filter",
    },
    "exporter": {
        "elasticsearch": "exporters.elasticsearch.exporter",
        "local": "exporters.local.exporter",
        "otlp": "exporters.otlp.exporter",
        "prometheus": "exporters.prometheus.exporter",
        "prometheus_remote_write": "exporters.prometheus_remote_write.exporter",
    },
}


def load_builtin_components() -> None:
    """Imports every built-in component's module (once; later calls are cheap)."""
    for modules in BUILTIN_COMPONENTS.values():
        for module in modules.values():
            importlib.import_module(module)


def load_component(kind: str, type_name: str) -> None:
    """Imports the module of one built-in component, if ``type_name`` is one."""
    module = BUILTIN_COMPONENTS.get(kind, {}).get(type_name)
    if module is not None:
        importlib.import_module(module)


def builtin_types(kind: str) -> frozenset[str]:
    """The type names of the built-in components of ``kind``, without importing them."""
    return frozenset(BUILTIN_COMPONENTS.get(kind, {}))
