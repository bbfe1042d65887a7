"""The demo's burnline config: the built-in default (its receivers, the local store, the Prometheus
exporter, the admin server), plus a ``prometheus_scrape`` receiver for the demo services' ``/metrics``,
the demo SLOs, and an ``alerting:`` section.

Every endpoint listens on loopback only (a demo has no business on the network). Each takes its
usual port when that is free, else a free one, so that a demo runs beside a real burnline; an
endpoint set in the environment (``BURNLINE_OTLP_HTTP_ENDPOINT`` ...) is used as given.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collector.config import parse_config
from collector.config.loader import read_config_file
from collector.config.model import Config
from collector.config.types import split_endpoint
from collector.demo.scenario import NAMESPACE, demo_slos

HOST = "127.0.0.1"
# The built-in default's endpoint variables and the port each defaults to there.
ENDPOINT_VARIABLES: dict[str, int] = {
    "BURNLINE_FORWARD_ENDPOINT": 24224,
    "BURNLINE_HTTP_ENDPOINT": 9880,
    "BURNLINE_OTLP_GRPC_ENDPOINT": 4317,
    "BURNLINE_OTLP_HTTP_ENDPOINT": 4318,
    "BURNLINE_REMOTE_WRITE_ENDPOINT": 19291,
    "BURNLINE_PROMETHEUS_ENDPOINT": 9464,
    "BURNLINE_ADMIN_ENDPOINT": 8888,
}
SCRAPE_INTERVAL = "2s"
EVALUATION_INTERVAL = "1s"  # detection within a second of the condition holding


def _bindable(port: int, udp: bool) -> bool:
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def _free_port(udp: bool) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if _bindable(port, udp):
            return port
    raise OSError("no free loopback port found")


def choose_endpoints(env: Mapping[str, str]) -> dict[str, str]:
    """An endpoint for each variable: the environment's, else the default port if free, else a free one."""
    out = {}
    for variable, port in ENDPOINT_VARIABLES.items():
        if env.get(variable):
            out[variable] = env[variable]
            continue
        udp = variable == "BURNLINE_FORWARD_ENDPOINT"  # Forward also answers UDP heartbeats
        chosen = port if _bindable(port, udp) else _free_port(udp)
        out[variable] = f"{HOST}:{chosen}"
    return out


@dataclass(frozen=True)
class DemoEndpoints:
    forward: tuple[str, int]
    otlp_http: str  # base URL
    admin: str  # base URL

    @classmethod
    def of(cls, endpoints: Mapping[str, str]) -> DemoEndpoints:
        def address(variable: str) -> tuple[str, int]:
            host, port = split_endpoint(endpoints[variable])
            return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), port

        def url(variable: str) -> str:
            host, port = address(variable)
            return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

        return cls(
            forward=address("BURNLINE_FORWARD_ENDPOINT"),
            otlp_http=url("BURNLINE_OTLP_HTTP_ENDPOINT"),
            admin=url("BURNLINE_ADMIN_ENDPOINT"),
        )


def demo_config_data(metrics_targets: Mapping[str, str], alertmanagers: list[str]) -> dict[str, Any]:
    """The demo config as data (variables not substituted yet)."""
    data, _ = read_config_file(None)
    data = copy.deepcopy(data)
    data["receivers"]["prometheus_scrape"] = {
        "scrape_interval": SCRAPE_INTERVAL,
        "jobs": [
            {
                "job_name": service,
                "static_configs": [{"targets": [target], "labels": {"namespace": NAMESPACE}}],
            }
            for service, target in metrics_targets.items()
        ],
    }
    metrics = data["service"]["pipelines"]["metrics"]
    metrics["receivers"] = [*metrics["receivers"], "prometheus_scrape"]
    data["slos"] = demo_slos()
    alerting: dict[str, Any] = {"evaluation_interval": EVALUATION_INTERVAL}
    if alertmanagers:
        alerting["alertmanagers"] = [{"url": url} for url in alertmanagers]
    data["alerting"] = alerting
    return data


def demo_config(
    data_dir: str,
    metrics_targets: Mapping[str, str],
    alertmanagers: list[str],
    env: Mapping[str, str] | None = None,
) -> tuple[Config, DemoEndpoints]:
    """The validated demo config and where its receivers and admin server listen.

    ConfigError when something given (an Alertmanager URL, an endpoint variable) is invalid."""
    environment = dict(os.environ if env is None else env)
    endpoints = choose_endpoints(environment)
    environment.update(endpoints)
    environment["BURNLINE_DATA_DIR"] = data_dir
    data = demo_config_data(metrics_targets, alertmanagers)
    config = parse_config(data, source="<burnline demo>", env=environment)
    return config, DemoEndpoints.of(endpoints)
