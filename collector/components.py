"""burnline's built-in components: adding one is a folder plus one line here.

Each module registers its component class with ``@register`` when imported; the core imports this
list only when it needs the registry, so nothing in the core depends on a component.
"""

from __future__ import annotations

import importlib

BUILTIN_MODULES = (
    "collector.receivers.forward.receiver",
    "collector.receivers.fluentbit_http.receiver",
    "collector.receivers.otlp.receiver",
    "collector.receivers.prometheus_scrape.receiver",
    "collector.receivers.remote_write.receiver",
    "collector.processors.attributes",
    "collector.processors.filter",
    "exporters.elasticsearch.exporter",
    "exporters.local.exporter",
    "exporters.otlp.exporter",
    "exporters.prometheus.exporter",
    "exporters.prometheus_remote_write.exporter",
)


def load_builtin_components() -> None:
    """Imports the modules that register burnline's own components (once; later calls are cheap)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
