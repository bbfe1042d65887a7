"""Kubernetes pod discovery: annotations -> targets, and list + watch against an API-server double."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from collector.discovery import TargetSpec, join_host_port, sanitize_label_name
from collector.discovery import pod_watch as k8s  # the list + watch timings
from collector.discovery.kubernetes import (
    DiscoveryError,
    KubernetesPodDiscovery,
    PodDiscoveryConfig,
    api_client,
    pod_targets,
)
from tests.doubles.kube_apiserver import KubeAPIServer, make_pod
from tests.support import wait_until

LOG = logging.getLogger("test.k8s")


# ---------------------------------------------------------------------------------------------
# Pods -> targets


def test_annotated_running_pod_is_a_target() -> None:
    pod = make_pod(
        "web-1",
        "shop",
        ip="10.1.2.3",
        port=8080,
        path="stats",
        scheme="HTTPS",
        labels={"app.kubernetes.io/name": "web", "tier": "front"},
        annotations={"prometheus.io/param_module": "http_2xx"},
        container_ports=[8080, 9090],
        container="server",
        node="node-7",
    )
    (target,), problem = pod_targets(pod)
    assert problem == ""
    assert target.address == "10.1.2.3:8080"
    assert target.scheme == "https"
    assert target.metrics_path == "/stats"
    assert target.params == (("module", "http_2xx"),)
    assert dict(target.labels) == {
        "namespace": "shop",
        "pod": "web-1",
        "container": "server",
        "node": "node-7",
        "app_kubernetes_io_name": "web",
        "tier": "front",
    }
    assert list(target.labels) == sorted(target.labels)
    assert dict(target.resource) == {
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "web-1",
        "k8s.pod.uid": pod["metadata"]["uid"],
        "k8s.node.name": "node-7",
        "k8s.container.name": "server",
    }


def test_without_port_annotation_every_declared_tcp_port_is_a_target() -> None:
    pod = make_pod("p", container_ports=[9100, 9200])
    pod["spec"]["containers"].append(
        {"name": "sidecar", "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 9300}]}
    )
    targets, problem = pod_targets(pod)
    assert problem == ""
    assert [(t.address, dict(t.labels)["container"]) for t in targets] == [
        ("127.0.0.1:9100", "app"),
        ("127.0.0.1:9200", "app"),
        ("127.0.0.1:9300", "sidecar"),
    ]
    assert all(t.scheme is None and t.metrics_path is None for t in targets)


def test_port_annotation_not_declared_by_any_container_has_no_container_label() -> None:
    (target,), _ = pod_targets(make_pod("p", port=7000, container_ports=[8080]))
    assert "container" not in dict(target.labels)
    assert target.address == "127.0.0.1:7000"


@pytest.mark.parametrize(
    ("pod", "problem"),
    [
        (make_pod("p", port=80, scrape=False), ""),
        (make_pod("p", port=80, annotations={"prometheus.io/scrape": "false"}, scrape=False), ""),
        (make_pod("p", port=80, phase="Pending"), ""),
        (make_pod("p", port=80, phase="Succeeded"), ""),
        (make_pod("p", port=80, ip=""), ""),
        (make_pod("p", port=None), "no prometheus.io/port annotation and no container declares a TCP port"),
        (
            make_pod("p", annotations={"prometheus.io/port": "http"}),
            "prometheus.io/port 'http' is not a port",
        ),
        (make_pod("p", annotations={"prometheus.io/port": "70000"}), "is not a port number"),
        (make_pod("p", port=80, scheme="ftp"), "prometheus.io/scheme 'ftp' is not http or https"),
    ],
    ids=[
        "not-annotated",
        "annotated-false",
        "pending",
        "succeeded",
        "no-ip",
        "no-port",
        "named-port",
        "port-out-of-range",
        "bad-scheme",
    ],
)
def test_pods_that_are_not_targets(pod: dict[str, Any], problem: str) -> None:
    targets, found = pod_targets(pod)
    assert targets == ()
    assert problem in found if problem else found == ""


def test_scrape_annotation_is_case_insensitive() -> None:
    pod = make_pod("p", port=80, scrape=False, annotations={"prometheus.io/scrape": " True "})
    assert len(pod_targets(pod)[0]) == 1


def test_pod_label_selection() -> None:
    labels = {
        "app": "web",
        "app.kubernetes.io/version": "1.0",
        "app_kubernetes_io/version": "x",
        "9lives": "y",
    }
    pod = make_pod("p", port=80, labels=labels)
    everything = dict(pod_targets(pod, "all")[0][0].labels)
    # Two keys sanitizing alike: the first in sorted order wins, deterministically.
    assert everything["app_kubernetes_io_version"] == "1.0"
    assert everything["_9lives"] == "y"
    assert everything["app"] == "web"
    assert set(dict(pod_targets(pod, "none")[0][0].labels)) == {"namespace", "pod", "node"}
    chosen = dict(pod_targets(pod, ["app", "missing"])[0][0].labels)
    assert chosen["app"] == "web"
    assert "missing" not in chosen and "app_kubernetes_io_version" not in chosen
    # Pod labels cannot override the target's own labels.
    clash = make_pod("p", "real-ns", port=80, labels={"namespace": "fake"})
    assert dict(pod_targets(clash)[0][0].labels)["namespace"] == "real-ns"


def test_ipv6_pod_address_and_helpers() -> None:
    (target,), _ = pod_targets(make_pod("p", ip="fd00::12", port=9100))
    assert target.address == "[fd00::12]:9100"
    assert join_host_port("10.0.0.1", 80) == "10.0.0.1:80"
    assert sanitize_label_name("a.b/c-d") == "a_b_c_d"
    assert sanitize_label_name("") == "_"


# ---------------------------------------------------------------------------------------------
# List + watch against the double


@pytest.fixture
async def apiserver() -> AsyncIterator[KubeAPIServer]:
    server = KubeAPIServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s, "BACKOFF_INITIAL", 0.05)
    monkeypatch.setattr(k8s, "BACKOFF_MAX", 0.2)


class Running:
    def __init__(self, discovery: KubernetesPodDiscovery) -> None:
        self.discovery = discovery
        self.errors: list[str] = []
        self.updates: list[list[TargetSpec]] = []
        self._task: asyncio.Task[None] | None = None

    async def _consume(self) -> None:
        async for targets in self.discovery.updates():
            self.updates.append(targets)

    def addresses(self) -> set[str]:
        """The addresses of the last target set reported through updates()."""
        return {t.address for t in self.updates[-1]} if self.updates else set()

    async def wait_for(self, addresses: set[str], timeout: float = 5.0) -> None:
        await wait_until(lambda: self.addresses() == addresses, timeout=timeout)


@asynccontextmanager
async def discovery(server: KubeAPIServer, **config: Any) -> AsyncIterator[Running]:
    errors: list[str] = []
    found = KubernetesPodDiscovery(
        PodDiscoveryConfig(api_server=server.url, **config), LOG, on_error=errors.append, coalesce=0.02
    )
    running = Running(found)
    running.errors = errors
    await found.start()
    task = asyncio.create_task(running._consume())
    try:
        yield running
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await found.stop()


def watching(server: KubeAPIServer, count: int = 1) -> bool:
    return len(server.watchers) >= count


async def test_lists_then_follows_adds_modifications_and_deletions(apiserver: KubeAPIServer) -> None:
    apiserver.add(make_pod("a", port=9001))
    apiserver.add(make_pod("quiet", port=9002, scrape=False))
    async with discovery(apiserver) as run:
        await run.wait_for({"127.0.0.1:9001"})
        await wait_until(lambda: watching(apiserver))
        (listed,) = apiserver.lists()
        (watch,) = apiserver.watches()
        # The watch starts where the list left off, asks for bookmarks and a server-side timeout.
        assert watch.resource_version == str(apiserver.version)
        assert watch.query["allowWatchBookmarks"].lower() == "true"
        assert 300 <= int(watch.query["timeoutSeconds"]) <= 600
        assert listed.query["limit"] == "500"

        apiserver.add(make_pod("b", port=9003))
        await run.wait_for({"127.0.0.1:9001", "127.0.0.1:9003"})
        # The annotation removed: the pod stops being a target.
        apiserver.modify(make_pod("a", port=9001, scrape=False))
        await run.wait_for({"127.0.0.1:9003"})
        # Annotated after the fact: it becomes one.
        apiserver.modify(make_pod("quiet", port=9002))
        await run.wait_for({"127.0.0.1:9002", "127.0.0.1:9003"})
        # A new port is a new target, the old one is gone.
        apiserver.modify(make_pod("quiet", port=9004))
        await run.wait_for({"127.0.0.1:9003", "127.0.0.1:9004"})
        # Not running any more (evicted, completed): gone.
        apiserver.modify(make_pod("b", port=9003, phase="Failed"))
        await run.wait_for({"127.0.0.1:9004"})
        apiserver.delete("default", "quiet")
        await run.wait_for(set())
        assert len(apiserver.lists()) == 1 and len(apiserver.watches()) == 1
        assert run.errors == []


async def test_expired_resource_version_lists_again(apiserver: KubeAPIServer) -> None:
    apiserver.add(make_pod("a", port=9001))
    async with discovery(apiserver) as run:
        await run.wait_for({"127.0.0.1:9001"})
        await wait_until(lambda: watching(apiserver))
        # Changes the watch will never see: they happen while it is being expired.
        apiserver.expire()
        apiserver.delete("default", "a")
        apiserver.add(make_pod("b", port=9002))
        await wait_until(lambda: len(apiserver.lists()) == 2)
        await run.wait_for({"127.0.0.1:9002"})
        await wait_until(lambda: len(apiserver.watches()) == 2)
        # The new watch starts from the new list's version, not from the expired one.
        assert apiserver.watches()[-1].resource_version == str(apiserver.version)
        assert run.discovery.lists == 2
        assert run.errors == []


async def test_watch_started_from_a_compacted_version_gets_410_and_lists_again(
    apiserver: KubeAPIServer,
) -> None:
    apiserver.add(make_pod("a", port=9001))
    async with discovery(apiserver) as run:
        await wait_until(lambda: watching(apiserver))
        last = apiserver.add(make_pod("b", port=9002))
        await run.wait_for({"127.0.0.1:9001", "127.0.0.1:9002"})
        # Connection lost; meanwhile a pod comes and history is compacted: resuming gets ERROR 410.
        apiserver.disconnect()
        apiserver.add(make_pod("c", port=9003))
        apiserver.oldest = apiserver.version + 1
        apiserver.history.clear()
        await wait_until(lambda: len(apiserver.lists()) == 2)
        assert apiserver.watches()[1].resource_version == str(last)
        await run.wait_for({"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"})
        await wait_until(lambda: len(apiserver.watches()) == 3)
        assert apiserver.watches()[2].resource_version == str(apiserver.version)


async def test_disconnect_resumes_from_the_last_seen_version_without_listing(
    apiserver: KubeAPIServer,
) -> None:
    async with discovery(apiserver) as run:
        await wait_until(lambda: watching(apiserver))
        last = apiserver.add(make_pod("a", port=9001))
        await run.wait_for({"127.0.0.1:9001"})
        apiserver.disconnect()
        # Changes while disconnected are replayed from history on the resumed watch.
        apiserver.add(make_pod("b", port=9002))
        await wait_until(lambda: len(apiserver.watches()) == 2)
        assert apiserver.watches()[1].resource_version == str(last)
        await run.wait_for({"127.0.0.1:9001", "127.0.0.1:9002"})
        assert len(apiserver.lists()) == 1
        assert "bad_response" not in run.errors  # a broken stream is a connection problem
        assert run.errors and set(run.errors) <= {"connection"}


async def test_watch_timeout_resumes_at_once_and_bookmarks_advance_the_version(
    apiserver: KubeAPIServer,
) -> None:
    async with discovery(apiserver) as run:
        await wait_until(lambda: watching(apiserver))
        marked = apiserver.bookmark()
        await asyncio.sleep(0.1)
        apiserver.end_watches()
        await wait_until(lambda: len(apiserver.watches()) == 2)
        assert apiserver.watches()[1].resource_version == str(marked)
        assert len(apiserver.lists()) == 1
        assert run.errors == []


async def test_api_errors_back_off_and_recover(apiserver: KubeAPIServer) -> None:
    apiserver.add(make_pod("a", port=9001))
    apiserver.fail_next = [500, 503]
    async with discovery(apiserver) as run:
        await run.wait_for({"127.0.0.1:9001"})
        assert run.errors == ["http_500", "http_503"]
        assert len(apiserver.lists()) == 3


async def test_forbidden_is_reported_and_retried(
    apiserver: KubeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    apiserver.fail_next = [403] * 3
    caplog.set_level(logging.INFO, logger="test.k8s")
    async with discovery(apiserver) as run:
        await wait_until(lambda: watching(apiserver))
        assert run.errors == ["http_403"] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One line per change of state, not one per failed attempt.
    assert len(warnings) == 1 and "injected failure 403" in warnings[0]
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_list_is_paged(apiserver: KubeAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s, "LIST_PAGE_SIZE", 2)
    for i in range(5):
        apiserver.add(make_pod(f"p{i}", port=9000 + i))
    async with discovery(apiserver) as run:
        await run.wait_for({f"127.0.0.1:{9000 + i}" for i in range(5)})
        pages = apiserver.lists()
        assert [p.query.get("continue") is not None for p in pages] == [False, True, True]


async def test_expired_continue_token_restarts_the_list(
    apiserver: KubeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(k8s, "LIST_PAGE_SIZE", 1)
    apiserver.add(make_pod("a", port=9001))
    apiserver.add(make_pod("b", port=9002))
    real_list = apiserver._list
    expired_once = False

    def expire_after_first_page(*args: Any) -> Any:
        nonlocal expired_once
        answer = real_list(*args)
        if not expired_once:
            expired_once = True
            apiserver.oldest = apiserver.version + 1
            apiserver.add(make_pod("unrelated", scrape=False))  # what the fresh list will be at
        return answer

    monkeypatch.setattr(apiserver, "_list", expire_after_first_page)
    async with discovery(apiserver) as run:
        await run.wait_for({"127.0.0.1:9001", "127.0.0.1:9002"})
        pages = [p.query.get("continue") for p in apiserver.lists()]
        # page 1, page 2 refused (410), then the whole list again from the start.
        assert pages[0] is None and pages[1] is not None and pages[2] is None
        assert run.errors == []


async def test_namespaces_and_selectors(apiserver: KubeAPIServer) -> None:
    apiserver.add(make_pod("a", "team-a", port=9001, labels={"scrape": "yes"}))
    apiserver.add(make_pod("b", "team-b", port=9002, labels={"scrape": "yes"}))
    apiserver.add(make_pod("c", "team-c", port=9003, labels={"scrape": "yes"}))
    apiserver.add(make_pod("d", "team-a", port=9004, labels={"scrape": "no"}))
    async with discovery(
        apiserver,
        namespaces=["team-a", "team-b"],
        label_selector="scrape=yes",
        field_selector="status.phase=Running",
    ) as run:
        await run.wait_for({"127.0.0.1:9001", "127.0.0.1:9002"})
        await wait_until(lambda: watching(apiserver, 2))
        assert {r.namespace for r in apiserver.requests} == {"team-a", "team-b"}
        assert {r.query["labelSelector"] for r in apiserver.requests} == {"scrape=yes"}
        assert {r.query["fieldSelector"] for r in apiserver.requests} == {"status.phase=Running"}
        apiserver.add(make_pod("e", "team-b", port=9005, labels={"scrape": "yes"}))
        apiserver.add(make_pod("f", "team-c", port=9006, labels={"scrape": "yes"}))
        await run.wait_for({"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9005"})


async def test_bad_field_selector_is_reported(apiserver: KubeAPIServer) -> None:
    async with discovery(apiserver, field_selector="spec.bogus=1") as run:
        await wait_until(lambda: len(run.errors) >= 2)
        assert set(run.errors) == {"http_400"}
        assert not apiserver.watches()


async def test_bursts_of_changes_are_coalesced(apiserver: KubeAPIServer) -> None:
    found = KubernetesPodDiscovery(PodDiscoveryConfig(api_server=apiserver.url), LOG, coalesce=0.3)
    await found.start()
    try:
        updates = found.updates()
        first = await asyncio.wait_for(anext(updates), 5)
        assert first == []
        await wait_until(lambda: watching(apiserver))
        for i in range(20):
            apiserver.add(make_pod(f"p{i}", port=9000 + i))
        second = await asyncio.wait_for(anext(updates), 5)
        assert len(second) == 20
    finally:
        await found.stop()


async def test_bearer_token_file_is_sent(apiserver: KubeAPIServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = PodDiscoveryConfig(api_server=apiserver.url, api_bearer_token_file=str(token))
    client = await api_client(config)
    try:
        settings = await client.configuration.auth_settings()
        assert settings["BearerToken"]["value"] == "Bearer s3cret"
    finally:
        await client.close()


async def test_no_api_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(DiscoveryError, match="no Kubernetes API server"):
        await api_client(PodDiscoveryConfig())


async def test_kubeconfig_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, apiserver: KubeAPIServer
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters: [{{name: c, cluster: {{server: '{apiserver.url}'}}}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: test, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    apiserver.add(make_pod("a", port=9001))
    found = KubernetesPodDiscovery(PodDiscoveryConfig(), LOG, coalesce=0.01)
    await found.start()
    try:
        await wait_until(lambda: [t.address for t in found.targets()] == ["127.0.0.1:9001"])
    finally:
        await found.stop()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        PodDiscoveryConfig(api_server="apiserver:6443")
    with pytest.raises(ValueError, match="listed twice"):
        PodDiscoveryConfig(namespaces=["a", "a"])
    assert PodDiscoveryConfig(api_server="https://k:6443/").api_server == "https://k:6443"


_STATIC_SCRAPE_ONLY = """
import sys
from collector.components import load_builtin_components
from collector.config.loader import parse_config

load_builtin_components()
job = {"job_name": "a", "static_configs": [{"targets": ["127.0.0.1:9100"]}]}
parse_config({
    "receivers": {"prometheus_scrape": {"jobs": [job]}},
    "exporters": {"prometheus": {}},
    "service": {"pipelines": {"metrics": {"receivers": ["prometheus_scrape"], "exporters": ["prometheus"]}}},
})
print("kubernetes_asyncio" in sys.modules)
"""


def test_the_kubernetes_client_is_imported_only_for_pod_discovery() -> None:
    # Its models take about 65 MiB of each process that imports them: a burnline whose config
    # discovers no pods (and every one of its workers) should not pay for them.
    done = subprocess.run(
        [sys.executable, "-c", _STATIC_SCRAPE_ONLY], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
