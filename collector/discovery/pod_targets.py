"""Kubernetes pods -> scrape targets: which pods are targets, and with which labels and resource.

A pod is a target when it is annotated ``prometheus.io/scrape: "true"``, is Running and has a pod IP
(the convention of Prometheus' example ``kubernetes-pods`` job and of the Prometheus Helm chart):

- ``prometheus.io/port``: the port to scrape; without it, every TCP port the pod's containers declare
  is a target;
- ``prometheus.io/path``: the metrics path (default: the job's, ``/metrics``);
- ``prometheus.io/scheme``: ``http`` or ``https``;
- ``prometheus.io/param_<name>``: a URL parameter.

Each target carries the labels ``namespace``, ``pod``, ``container`` (when known) and ``node``, plus
the pod's labels (all, some or none), sanitized to label names as Prometheus' ``labelmap`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.discovery import TargetSpec, join_host_port, sanitize_label_name
from collector.discovery.kubernetes_config import PodLabels

SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"
SCHEME_ANNOTATION = "prometheus.io/scheme"
PARAM_ANNOTATION_PREFIX = "prometheus.io/param_"


def pod_targets(pod: Mapping[str, Any], pod_labels: PodLabels = "all") -> tuple[tuple[TargetSpec, ...], str]:
    """The targets a pod stands for, and a problem (``""`` if none) when its annotations ask for
    scraping but cannot be followed."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(SCRAPE_ANNOTATION, "")).strip().lower() != "true":
        return (), ""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip:
        return (), ""
    spec = pod.get("spec") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    scheme = None
    if annotations.get(SCHEME_ANNOTATION):
        scheme = str(annotations[SCHEME_ANNOTATION]).strip().lower()
        if scheme not in ("http", "https"):
            return (), f"{SCHEME_ANNOTATION} {scheme!r} is not http or https"
    path = None
    if annotations.get(PATH_ANNOTATION):
        path = str(annotations[PATH_ANNOTATION]).strip()
        if not path.startswith("/"):
            path = "/" + path
    params = tuple(
        sorted(
            (key[len(PARAM_ANNOTATION_PREFIX) :], str(value))
            for key, value in annotations.items()
            if key.startswith(PARAM_ANNOTATION_PREFIX) and len(key) > len(PARAM_ANNOTATION_PREFIX)
        )
    )
    declared = _declared_ports(spec)
    ports: list[tuple[int, str]]
    if annotations.get(PORT_ANNOTATION):
        text = str(annotations[PORT_ANNOTATION]).strip()
        if not text.isdigit() or not 0 < int(text) < 65536:
            return (), f"{PORT_ANNOTATION} {text!r} is not a port number"
        port = int(text)
        ports = [(port, next((c for p, c in declared if p == port), ""))]
    else:
        ports = declared
        if not ports:
            return (), f"no {PORT_ANNOTATION} annotation and no container declares a TCP port"
    labels = _copied_labels(meta.get("labels") or {}, pod_labels)
    labels["namespace"] = namespace
    labels["pod"] = name
    node = str(spec.get("nodeName") or "")
    if node:
        labels["node"] = node
    resource = {"k8s.namespace.name": namespace, "k8s.pod.name": name}
    if meta.get("uid"):
        resource["k8s.pod.uid"] = str(meta["uid"])
    if node:
        resource["k8s.node.name"] = node
    targets = []
    for port, container in ports:
        target_labels = dict(labels)
        target_resource = dict(resource)
        if container:
            target_labels["container"] = container
            target_resource["k8s.container.name"] = container
        targets.append(
            TargetSpec(
                address=join_host_port(str(ip), port),
                labels=tuple(sorted(target_labels.items())),
                scheme=scheme,
                metrics_path=path,
                params=params,
                resource=tuple(sorted(target_resource.items())),
            )
        )
    return tuple(targets), ""


def _declared_ports(spec: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(port, container name) of every TCP port the pod's containers declare, each port once."""
    seen: dict[int, str] = {}
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if port.get("protocol", "TCP") != "TCP" or not isinstance(number, int) or number in seen:
                continue
            if 0 < number < 65536:
                seen[number] = str(container.get("name") or "")
    return list(seen.items())


def _copied_labels(pod_labels: Mapping[str, Any], which: PodLabels) -> dict[str, str]:
    if which == "none" or not pod_labels:
        return {}
    keys = sorted(pod_labels) if which == "all" else [key for key in which if key in pod_labels]
    copied: dict[str, str] = {}
    for key in keys:
        # Two keys may sanitize alike (a.b and a_b): the first in sorted order wins, every time.
        copied.setdefault(sanitize_label_name(key), str(pod_labels[key]))
    return copied
