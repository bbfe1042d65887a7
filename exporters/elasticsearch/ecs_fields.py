"""ECS field names and attribute values: the semantic-convention -> ECS renames, the ECS field sets
an attribute may not take, JSON-able copies of attribute values, and the placement of attributes in a
document (the rules are in exporters/elasticsearch/ecs.py's docstring).
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from collector.normalize.values import key_text, nonfinite_text

DATASET_ATTRIBUTE = "data_stream.dataset"
NAMESPACE_ATTRIBUTE = "data_stream.namespace"
ROUTING_ATTRIBUTES = frozenset({"data_stream.type", DATASET_ATTRIBUTE, NAMESPACE_ATTRIBUTE})

_SEMCONV_TO_ECS = {
    "service.instance.id": "service.node.name",
    "deployment.environment": "service.environment",
    "deployment.environment.name": "service.environment",
    "host.arch": "host.architecture",
    "os.type": "host.os.platform",
    "os.description": "host.os.full",
    "os.name": "host.os.name",
    "os.version": "host.os.version",
    "container.image.tags": "container.image.tag",
    "k8s.namespace.name": "kubernetes.namespace",
    "k8s.pod.name": "kubernetes.pod.name",
    "k8s.pod.uid": "kubernetes.pod.uid",
    "k8s.container.name": "kubernetes.container.name",
    "k8s.node.name": "kubernetes.node.name",
    "k8s.deployment.name": "kubernetes.deployment.name",
    "k8s.statefulset.name": "kubernetes.statefulset.name",
    "k8s.replicaset.name": "kubernetes.replicaset.name",
    "k8s.daemonset.name": "kubernetes.daemonset.name",
    "k8s.job.name": "kubernetes.job.name",
    "k8s.cronjob.name": "kubernetes.cronjob.name",
    "k8s.cluster.name": "orchestrator.cluster.name",
    "k8s.pod.ip": "kubernetes.pod.ip",
}
# Same name in both schemas: listed so that they count as ECS fields (they win clashes).
_SAME_IN_ECS = frozenset(
    {
        "service.name",
        "service.version",
        "service.environment",
        "host.name",
        "host.id",
        "host.hostname",
        "container.id",
        "container.name",
        "container.image.name",
        "cloud.provider",
        "cloud.region",
        "cloud.availability_zone",
        "cloud.account.id",
        "cloud.platform",
    }
)
# ECS field sets: always objects in an ECS index, so an attribute may not claim their name for a value
# (``host`` = "web-1" would make every later ``host.name`` unindexable, and the reverse).
_ECS_OBJECTS = frozenset(
    {
        "agent",
        "client",
        "cloud",
        "container",
        "data_stream",
        "destination",
        "device",
        "dns",
        "ecs",
        "email",
        "error",
        "event",
        "faas",
        "file",
        "group",
        "host",
        "http",
        "kubernetes",
        "labels",
        "log",
        "network",
        "observer",
        "orchestrator",
        "organization",
        "package",
        "process",
        "registry",
        "related",
        "rule",
        "server",
        "service",
        "source",
        "span",
        "threat",
        "tls",
        "trace",
        "transaction",
        "url",
        "user",
        "user_agent",
        "vulnerability",
    }
)
# ECS fields that are always values, so an attribute may not put an object under them.
_ECS_VALUES = frozenset({"@timestamp", "message"})
# Map-valued Kubernetes metadata, one attribute per key -> Filebeat's field names. Dots in the keys
# become "_" so that "app" and "app.kubernetes.io/name" can both be fields.
_KUBERNETES_MAPS = (
    ("k8s.pod.label.", "kubernetes.labels."),
    ("k8s.pod.annotation.", "kubernetes.annotations."),
    ("k8s.namespace.label.", "kubernetes.namespace_labels."),
    ("k8s.namespace.annotation.", "kubernetes.namespace_annotations."),
)

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


# ---------------------------------------------------------------------------------------------------
# Values and names


def json_value(value: Any) -> Any:
    """A JSON-able, Elasticsearch-friendly copy of an attribute value."""
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, float):
        # Normalizers already turn these into strings; this edge keeps any other path valid JSON.
        return value if math.isfinite(value) else nonfinite_text(value)
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {key_text(k): json_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((json_value(v) for v in value), key=repr)
    return str(value)


def leaf_value(value: Any) -> Any:
    """``json_value`` with the common leaves (str, bool, int, float) decided by exact type first: the
    per-record hot path of the compiled log and span shapes."""
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is int:
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if kind is float:
        return value if math.isfinite(value) else nonfinite_text(value)
    return json_value(value)


def utf8_safe(value: Any) -> Any:
    """A copy whose strings are valid UTF-8: lone surrogates (from lenient decoders) become "?"."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {utf8_safe(k): utf8_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utf8_safe(v) for v in value]
    return value


def clean_key(key: Any) -> str:
    text = key if isinstance(key, str) else key_text(key)
    if text and text[0] != "." and text[-1] != "." and ".." not in text and not text.isspace():
        return text
    parts = [p for p in text.split(".") if p and not p.isspace()]
    return ".".join(parts) or "_"


def flat_items(attributes: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) for every leaf; nested maps are flattened, empty maps and None dropped."""
    for raw_key, value in attributes.items():
        if value is None:
            continue
        key = clean_key(raw_key)
        if prefix:
            key = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            yield from flat_items(value, key)
        else:
            yield key, value


@functools.lru_cache(maxsize=65536)
def ecs_name(key: str) -> str | None:
    """The ECS name of a semantic-convention attribute, or None if it has none."""
    mapped = _SEMCONV_TO_ECS.get(key)
    if mapped is not None:
        return mapped
    if key in _SAME_IN_ECS:
        return key
    if key.startswith("k8s."):
        for prefix, ecs_prefix in _KUBERNETES_MAPS:
            if key.startswith(prefix) and len(key) > len(prefix):
                return ecs_prefix + key[len(prefix) :].replace(".", "_")
    return None


@functools.lru_cache(maxsize=65536)
def _prefixes(key: str) -> tuple[str, ...]:
    """``a.b.c`` -> (``a``, ``a.b``): the objects that hold it. Names repeat from record to record."""
    out = []
    pos = key.find(".")
    while pos != -1:
        out.append(key[:pos])
        pos = key.find(".", pos + 1)
    return tuple(out)


def message_text(body: Any) -> str | None:
    if body is None:
        return None
    if isinstance(body, str):
        return body
    if isinstance(body, bytes | bytearray):
        return bytes(body).decode("utf-8", "backslashreplace")
    if isinstance(body, Mapping | list | tuple | set | frozenset):
        return orjson.dumps(json_value(body)).decode()
    return str(body)


def _unique(key: str, taken: Mapping[str, Any] | set[str], objects: set[str]) -> str:
    candidate, n = key, 1
    while candidate in taken or candidate in objects:
        candidate = f"{key}_{n}"
        n += 1
    return candidate


def resolve_object_conflicts(flat: dict[str, Any]) -> None:
    """Moves a value whose name is also an object prefix (``a`` beside ``a.b``) to ``a.value``."""
    objects = {prefix for key in flat for prefix in _prefixes(key)}
    conflicting = [key for key in flat if key in objects]
    for key in conflicting:
        value = flat.pop(key)
        flat[_unique(f"{key}.value", flat, objects)] = value


@functools.lru_cache(maxsize=65536)
def _path(key: str) -> tuple[tuple[str, ...], str]:
    *parents, leaf = key.split(".")
    return tuple(parents), leaf


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted names -> nested objects (ingest pipelines and Kibana both expect the nested form)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if "." not in key:
            out[key] = value
            continue
        parents, leaf = _path(key)
        node = out
        for part in parents:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
        node[leaf] = value
    return out


# ---------------------------------------------------------------------------------------------------
# Attribute placement


# An attribute ready for placement: (dotted name, its ECS name or None, JSON-able value).
AttributeFields = list[tuple[str, str | None, Any]]


def attribute_fields(
    attributes: Mapping[Any, Any], renames: Mapping[str, str] | None = None
) -> AttributeFields:
    """Flattens attributes and looks up their ECS names (routing attributes are left out).

    ``renames`` are ECS names that apply to these attributes only (a span's ``db.system``). A
    resource is shared by many records: compute its fields once and pass them to the document.
    """
    if renames:
        return [
            (key, renames.get(key) or ecs_name(key), json_value(value))
            for key, value in flat_items(attributes)
            if key not in ROUTING_ATTRIBUTES
        ]
    return [
        (key, ecs_name(key), json_value(value))
        for key, value in flat_items(attributes)
        if key not in ROUTING_ATTRIBUTES
    ]


def place_attributes(flat: dict[str, Any], sources: Iterable[tuple[str, AttributeFields]]) -> None:
    """Adds attributes to a document's own fields (see the module docstring for the rules).

    ``sources`` are (namespace for clashes, fields), the winner of a clash first.
    """
    # (namespace used on a clash, name, value, clashes already: the ECS field it maps to is taken)
    others: list[tuple[str, str, Any, bool]] = []
    for clash_namespace, fields in sources:
        for key, target, value in fields:
            if target is None:
                others.append((clash_namespace, key, value, False))
            elif target in flat:
                others.append((clash_namespace, key, value, True))
            else:
                flat[target] = value

    ecs_fields = set(flat)
    ecs_objects = {prefix for key in flat for prefix in _prefixes(key)}
    for clash_namespace, key, value, clashes in others:
        name = key
        if (
            clashes
            or key in flat
            or key in ecs_objects
            or key in _ECS_OBJECTS
            or key.startswith("data_stream.")  # Elasticsearch's own: only type, dataset and namespace
            or any(p in ecs_fields or p in _ECS_VALUES for p in _prefixes(key))
        ):
            name = _unique(clash_namespace + key, flat, ecs_objects)
        flat[name] = value
    resolve_object_conflicts(flat)
