"""The contract every registered component keeps, checked for each one the registry holds.

Its default config (or, when the model cannot do without some keys, the minimal config below)
validates; built with every listening endpoint on 127.0.0.1 port 0 and its data under the test's
directory, it starts without its backend being up, reports ready, and stops twice without error (a
half-started service stops what it started, and reload may stop a component the service stops
again). The cases come from the registry when the tests are collected, so a new component is
covered as soon as it registers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from collector.core.component import (
    Component,
    ComponentContext,
    Exporter,
    Receiver,
    registered,
)
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter

# The test-only components (capture, inject) register when tests.support is imported; importing it
# here keeps the set of cases the same whether this file runs alone or with the rest of the suite.
from tests.support import free_port

KINDS = ("receiver", "processor", "exporter")

# Types whose config model needs some keys: the fewest that make it valid. ``backend`` is host:port
# of a closed loopback port, so that a component talking to a backend finds none there.
MINIMAL_CONFIGS: dict[tuple[str, str], Callable[[str], dict[str, Any]]] = {
    ("receiver", "prometheus_scrape"): lambda backend: {
        "jobs": [{"job_name": "contract", "static_configs": [{"targets": [backend]}]}]
    },
    ("processor", "attributes"): lambda backend: {"actions": [{"key": "contract", "action": "delete"}]},
    ("exporter", "elasticsearch"): lambda backend: {"endpoints": [f"http://{backend}"]},
    ("exporter", "otlp"): lambda backend: {"endpoint": backend, "insecure": True},
    ("exporter", "prometheus_remote_write"): lambda backend: {"endpoint": f"http://{backend}/api/v1/write"},
}

# Real bugs the contract found in components this file does not own: (kind, type) -> why. Each case
# is a strict xfail, so that the fix turns it into a failure to remove from here.
KNOWN_BREACHES: dict[tuple[str, str], str] = {}

# A listening address as config models default it: host:port, no scheme (``0.0.0.0:4317``, ``[::]:80``).
_LISTEN_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]*\]|[^\s/:\[\]]*):\d+$")


def listening_endpoints(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of the settings that name an address to listen on: string fields whose default is
    host:port, in the model and in the nested sections its defaults include (a section that is off
    by default, such as tls, is left off)."""
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, str) and _LISTEN_ADDRESS.match(default):
            found.append((*prefix, name))
        elif isinstance(default, BaseModel):
            found += listening_endpoints(type(default), (*prefix, name))
    return found


def _cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        for type_name in sorted(registered(kind)):
            marks = []
            if (kind, type_name) in KNOWN_BREACHES:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BREACHES[kind, type_name]))
            cases.append(pytest.param(kind, type_name, marks=marks, id=f"{kind}/{type_name}"))
    return cases


class _Discard:
    """A pipeline stand-in that takes every batch."""

    async def consume(self, batch: Batch) -> None:
        pass


def _base_config(kind: str, type_name: str, model: type[BaseModel], backend: str) -> dict[str, Any]:
    """(a) The config the contract starts from; it must validate."""
    minimal = MINIMAL_CONFIGS.get((kind, type_name))
    if minimal is not None:
        settings = minimal(backend)
        model.model_validate(settings)
        return settings
    try:
        model()
    except ValidationError as exc:
        pytest.fail(
            f"{kind} {type_name!r} has no valid default config; add its minimal config to "
            f"MINIMAL_CONFIGS in {Path(__file__).name}:\n{exc}"
        )
    return {}


def _on_loopback(settings: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """``settings`` with every listening endpoint at 127.0.0.1:0 (the kernel picks a free port)."""
    for path in paths:
        section = settings
        for key in path[:-1]:
            section = section.setdefault(key, {})
        section[path[-1]] = "127.0.0.1:0"
    return settings


def _build(kind: str, cls: type[Component], config: Any, data_dir: Path) -> Component:
    """The component as the service builds it (collector/core/service.py)."""
    telemetry = Telemetry()
    cid = f"{cls.type_name}/contract"
    ctx = ComponentContext(
        id=cid,
        telemetry=telemetry,
        data_dir=str(data_dir),
        logger=logging.getLogger(f"burnline.{kind}.{cid}"),
    )
    if kind == "receiver":
        consumers: dict[Signal, Any] = {signal: _Discard() for signal in cls.signals}
        return cls(config, ctx, consumers)  # type: ignore[call-arg]
    component = cls(config, ctx)
    if isinstance(component, Exporter):
        component.dead_letter = DeadLetter(cid, data_dir / "deadletter", telemetry)
    return component


async def _ready(component: Component, endpoints: list[tuple[str, ...]]) -> None:
    """(b) What readiness the component exposes holds once start() has returned."""
    if isinstance(component, Receiver):
        assert component.ready(), f"receiver {component.type_name!r} is not ready after start()"
    elif endpoints:
        # An exporter that listens (prometheus) says where through its port; it must accept there.
        port = getattr(component, "port", None)
        assert isinstance(port, int) and port > 0, f"{component.type_name!r} listens on no port: {port!r}"
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(("kind", "type_name"), _cases())
async def test_component_contract(
    kind: str, type_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cls = registered(kind)[type_name]
    model = cls.config_model
    backend = f"127.0.0.1:{free_port()}"  # closed: nothing listens there
    endpoints = listening_endpoints(model)
    config = model.model_validate(_on_loopback(_base_config(kind, type_name, model, backend), endpoints))
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    component = _build(kind, cls, config, data_dir)
    try:
        await asyncio.wait_for(component.start(), timeout=30)
        await _ready(component, endpoints)
    finally:
        await component.stop()
    # (c) A second stop finds nothing left to release and says nothing.
    caplog.clear()
    await component.stop()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
