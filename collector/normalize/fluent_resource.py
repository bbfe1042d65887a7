"""Fluent records' resources: Kubernetes and Docker metadata -> OpenTelemetry resource attributes.

Resource (one dict object shared by every record of a source within a batch):
  * Fluent Bit's ``kubernetes`` map: ``namespace_name`` -> ``k8s.namespace.name``, ``pod_name`` ->
    ``k8s.pod.name``, ``pod_id`` -> ``k8s.pod.uid``, ``container_name`` -> ``k8s.container.name``,
    ``host`` -> ``k8s.node.name``, ``pod_ip`` -> ``k8s.pod.ip``, ``docker_id`` -> ``container.id``,
    ``container_image`` -> ``container.image.name`` + ``container.image.tags`` (or
    ``container.image.id`` when the runtime reports only ``sha256:...``), ``container_hash`` ->
    ``container.image.repo_digests`` (``repo@sha256:...``) or ``container.image.id``;
    ``ownerReferences`` (Fluent Bit ``Owner_References On``) -> ``k8s.replicaset.name`` and
    ``k8s.deployment.name`` (the ReplicaSet name minus its ``pod-template-hash``),
    ``k8s.statefulset.name``, ``k8s.daemonset.name``, ``k8s.job.name``, ``k8s.cronjob.name``.
    Labels -> ``k8s.pod.label.<key>`` (``kubernetes_labels``, on by default), annotations ->
    ``k8s.pod.annotation.<key>`` (``kubernetes_annotations``, off by default: annotations are often
    large, e.g. ``kubectl.kubernetes.io/last-applied-configuration``). The ``kubernetes_namespace``
    map (``Namespace_Labels``/``Namespace_Annotations``) -> ``k8s.namespace.label.<key>`` /
    ``k8s.namespace.annotation.<key>`` under the same two switches. Other keys of the map (Fluent
    Bit internals such as ``aws_entity_*``) are dropped.
  * Pod annotations ``resource.opentelemetry.io/<attribute>`` become ``<attribute>``, whatever the
    switches say (OpenTelemetry's way for a pod to declare its own resource).
  * ``service.name``: the annotation above, else the first set pod label of ``service_name_from``
    (default ``app.kubernetes.io/name``, ``app``, ``k8s-app``; ``[]`` turns label use off), else the
    workload (deployment, statefulset, daemonset, cronjob, job; only with owner references), else
    the container name (stable across restarts, unlike the pod name, which is the last resort).
    ``service.namespace``: annotation, else the Kubernetes namespace. ``service.version``:
    annotation, else label ``app.kubernetes.io/version``, else the image tag. This follows the
    OpenTelemetry "k8s attributes" recommendations, except that it reads ``app.kubernetes.io/name``
    before ``app.kubernetes.io/instance`` (a Helm release name is not a service name).
  * A record's own ``service.name`` (or ``otelServiceName``, from OpenTelemetry's Python logging
    instrumentation), at its top level or in its JSON body, wins over all of the above: the
    application declares its identity, the labels are a heuristic. Values starting with
    ``unknown_service`` (the SDK default) count as unset. A bare ``service`` key is not read: too
    many logs use it for something else (the remote service called).
  * Docker's fluentd logging driver (``container_id``, ``container_name``, ``source``) ->
    ``container.id``, ``container.name`` (no leading ``/``), ``log.iostream``.
  * Other records get an empty resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeGuard

from collector.normalize.values import clean_map

if TYPE_CHECKING:
    from collector.normalize.fluent_config import FluentNormalizeConfig

Resource = dict[str, Any]

_KUBERNETES_FIELDS: Final = (
    ("namespace_name", "k8s.namespace.name"),
    ("pod_name", "k8s.pod.name"),
    ("pod_id", "k8s.pod.uid"),
    ("container_name", "k8s.container.name"),
    ("host", "k8s.node.name"),
    ("pod_ip", "k8s.pod.ip"),
    ("docker_id", "container.id"),
)
_OWNER_KINDS: Final = {
    "StatefulSet": "k8s.statefulset.name",
    "DaemonSet": "k8s.daemonset.name",
    "Job": "k8s.job.name",
}
# After the labels, as OpenTelemetry orders them: from the workload down to the container.
_SERVICE_NAME_FALLBACKS: Final = (
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
    "k8s.container.name",
    "k8s.pod.name",
)
_RESOURCE_ANNOTATION: Final = "resource.opentelemetry.io/"
_EMPTY_MAP: Final[dict[str, Any]] = {}
# A CronJob names its Jobs <cronjob>-<scheduled minute since the epoch>.
_CRONJOB_SUFFIX_DIGITS: Final = 8


class Resources:
    """The resource dicts of one batch: every record of one source gets the same dict object.

    Records decoded from msgpack each carry their own copy of the ``kubernetes`` map, so the cache
    is keyed by the map's identity first and by its pod and container second, checked by equality
    (a label changed between two records gives a new resource, not a stale one).
    """

    __slots__ = ("_by_container", "_by_identity", "_config", "_docker", "_service_names", "empty")

    def __init__(self, config: FluentNormalizeConfig) -> None:
        self._config = config
        self.empty: Resource = {}
        self._by_identity: dict[int, tuple[Any, Any, Resource]] = {}
        self._by_container: dict[tuple[Any, ...], tuple[Any, Any, Resource]] = {}
        self._docker: dict[tuple[str, str], Resource] = {}
        self._service_names: dict[tuple[int, str], tuple[Resource, Resource]] = {}

    def kubernetes(self, attributes: dict[str, Any]) -> Resource:
        """The resource of a record with Fluent Bit's kubernetes maps (popped from ``attributes``)."""
        kube = attributes.pop("kubernetes", None)
        if kube is not None and type(kube) is not dict:
            attributes["kubernetes"] = kube
            kube = None
        namespace = attributes.pop("kubernetes_namespace", None)
        if namespace is not None and type(namespace) is not dict:
            attributes["kubernetes_namespace"] = namespace
            namespace = None
        if kube is None and namespace is None:
            return self.empty

        entry = self._by_identity.get(id(kube))
        if entry is not None and entry[0] is kube and entry[1] is namespace:
            return entry[2]
        source = kube or _EMPTY_MAP
        key = (
            source.get("namespace_name"),
            source.get("pod_name"),
            source.get("container_name"),
            source.get("docker_id"),
            None if namespace is None else namespace.get("name"),
        )
        try:
            entry = self._by_container.get(key)
        except TypeError:  # an unhashable value where a name belongs: build, do not cache
            return _kubernetes_resource(clean_map(source), _clean_or_none(namespace), self._config)
        if entry is not None and entry[0] == kube and entry[1] == namespace:
            return entry[2]  # an equal copy: maps decoded from msgpack are new objects per record
        # The maps come as the client sent them (see fluent._clean_fields): cleaned here, once.
        resource = _kubernetes_resource(clean_map(source), _clean_or_none(namespace), self._config)
        entry = (kube, namespace, resource)
        self._by_container[key] = entry
        # The entry holds kube, so its id cannot be reused by another map within the batch.
        self._by_identity[id(kube)] = entry
        return entry[2]

    def docker(self, attributes: dict[str, Any]) -> Resource:
        """The resource of a record from Docker's fluentd logging driver (keys popped)."""
        container_id = attributes.get("container_id")
        name = attributes.get("container_name")
        if type(container_id) is not str or type(name) is not str:
            return self.empty
        del attributes["container_id"], attributes["container_name"]
        resource = self._docker.get((container_id, name))
        if resource is None:
            resource = {"container.id": container_id, "container.name": name.lstrip("/")}
            self._docker[(container_id, name)] = resource
        return resource

    def with_service_name(self, resource: Resource, name: str) -> Resource:
        """``resource`` with the record's own service.name, shared by all records naming it."""
        if resource.get("service.name") == name:
            return resource
        key = (id(resource), name)
        entry = self._service_names.get(key)
        if entry is None or entry[0] is not resource:
            entry = (resource, {**resource, "service.name": name})
            self._service_names[key] = entry
        return entry[1]


def _kubernetes_resource(
    kube: dict[str, Any], namespace: dict[str, Any] | None, config: FluentNormalizeConfig
) -> Resource:
    resource: Resource = {}
    for field, attribute in _KUBERNETES_FIELDS:
        value = kube.get(field)
        if value is not None:
            resource[attribute] = value
    if namespace is not None and "k8s.namespace.name" not in resource:
        name = namespace.get("name")
        if name is not None:
            resource["k8s.namespace.name"] = name

    labels = _map(kube.get("labels"))
    annotations = _map(kube.get("annotations"))
    image_tag = None
    image = kube.get("container_image")
    if type(image) is str and image:
        image_tag = _add_image(resource, image)
    digest = kube.get("container_hash")
    if type(digest) is str and digest:
        if "@" in digest:
            resource["container.image.repo_digests"] = [digest]
        elif digest.startswith("sha256:"):
            resource["container.image.id"] = digest
    owners = kube.get("ownerReferences")
    if type(owners) is list:
        _add_workload(resource, owners, labels)

    namespace_labels = _map(namespace.get("labels")) if namespace is not None else _EMPTY_MAP
    namespace_annotations = _map(namespace.get("annotations")) if namespace is not None else _EMPTY_MAP
    if config.kubernetes_labels:
        for key, value in labels.items():
            resource[f"k8s.pod.label.{key}"] = value
        for key, value in namespace_labels.items():
            resource[f"k8s.namespace.label.{key}"] = value
    if config.kubernetes_annotations:
        for key, value in annotations.items():
            resource[f"k8s.pod.annotation.{key}"] = value
        for key, value in namespace_annotations.items():
            resource[f"k8s.namespace.annotation.{key}"] = value
    for key, value in annotations.items():
        if type(key) is str and key.startswith(_RESOURCE_ANNOTATION) and len(key) > len(_RESOURCE_ANNOTATION):
            resource[key[len(_RESOURCE_ANNOTATION) :]] = value

    if not _is_name(resource.get("service.name")):
        name = next((labels[k] for k in config.service_name_from if _is_name(labels.get(k))), None)
        if name is None:
            name = next((resource[k] for k in _SERVICE_NAME_FALLBACKS if _is_name(resource.get(k))), None)
        if name is not None:
            resource["service.name"] = name
    if "service.namespace" not in resource and _is_name(resource.get("k8s.namespace.name")):
        resource["service.namespace"] = resource["k8s.namespace.name"]
    if "service.version" not in resource:
        version = labels.get("app.kubernetes.io/version")
        if _is_name(version):
            resource["service.version"] = version
        elif image_tag:
            resource["service.version"] = image_tag
    return resource


def _map(value: Any) -> dict[Any, Any]:
    return value if type(value) is dict else _EMPTY_MAP


def _is_name(value: Any) -> TypeGuard[str]:
    return type(value) is str and value != ""


def _add_image(resource: Resource, image: str) -> str | None:
    """container.image.* from an image reference (``registry:5000/repo:tag@sha256:...``); its tag."""
    if image.startswith("sha256:"):  # the runtime knows the image only by its id
        resource["container.image.id"] = image
        return None
    name, _, digest = image.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    if name:
        resource["container.image.name"] = name
    if tag:
        resource["container.image.tags"] = [tag]
    if digest and name:
        resource["container.image.repo_digests"] = [f"{name}@{digest}"]
    return tag or None


def _add_workload(resource: Resource, owners: list[Any], labels: dict[Any, Any]) -> None:
    """k8s.<workload>.name from the pod's controller owner reference."""
    candidates = [owner for owner in owners if type(owner) is dict]
    owner = next((o for o in candidates if o.get("controller") is True), None)
    if owner is None:
        if not candidates:
            return
        owner = candidates[0]
    kind, name = owner.get("kind"), owner.get("name")
    if type(kind) is not str or not _is_name(name):
        return
    if kind == "ReplicaSet":
        resource["k8s.replicaset.name"] = name
        template_hash = labels.get("pod-template-hash")
        if _is_name(template_hash) and name.endswith("-" + template_hash):
            resource["k8s.deployment.name"] = name[: -len(template_hash) - 1]
    elif kind in _OWNER_KINDS:
        resource[_OWNER_KINDS[kind]] = name
        if kind == "Job":
            base, _, suffix = name.rpartition("-")
            if base and len(suffix) >= _CRONJOB_SUFFIX_DIGITS and suffix.isascii() and suffix.isdigit():
                resource["k8s.cronjob.name"] = base


def _clean_or_none(value: dict[Any, Any] | None) -> dict[str, Any] | None:
    return None if value is None else clean_map(value)
