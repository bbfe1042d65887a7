"""The Kubernetes API client pod discovery uses.

The Kubernetes client (kubernetes_asyncio) supplies connection settings and credentials: an explicit
``api_server``, a kubeconfig, or the in-cluster service account, whose token it re-reads as kubelet
rotates it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config

from collector import __version__
from collector.discovery.kubernetes_config import PodDiscoveryConfig

# The service account token kubelet mounts is rotated; an explicit token file is re-read this often.
TOKEN_REREAD_INTERVAL = 60.0

IN_CLUSTER_HOST_ENV = "KUBERNETES_SERVICE_HOST"


class DiscoveryError(Exception):
    """Discovery cannot start: no way to reach an API server was configured or found."""


async def api_client(config: PodDiscoveryConfig) -> ApiClient:
    """A Kubernetes API client from the configured (or found) connection settings."""
    configuration = Configuration()
    try:
        if config.api_server:
            configuration.host = config.api_server
            tls = config.api_tls
            if tls is not None:
                configuration.ssl_ca_cert = tls.ca_file
                configuration.cert_file = tls.cert_file
                configuration.key_file = tls.key_file
                configuration.verify_ssl = not tls.insecure_skip_verify
                configuration.tls_server_name = tls.server_name
            if config.api_bearer_token_file:
                _use_token_file(configuration, config.api_bearer_token_file)
        elif config.kubeconfig:
            await load_kube_config(
                config_file=config.kubeconfig, context=config.kube_context, client_configuration=configuration
            )
        elif os.environ.get(IN_CLUSTER_HOST_ENV):
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            path = _default_kubeconfig()
            await load_kube_config(
                config_file=path, context=config.kube_context, client_configuration=configuration
            )
    except ConfigException as exc:
        raise DiscoveryError(f"cannot load the Kubernetes client configuration: {exc}") from None
    client = ApiClient(configuration)
    client.user_agent = f"burnline/{__version__}"
    return client


def _default_kubeconfig() -> str:
    path = os.path.expanduser(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config")
    if not Path(path).is_file():
        raise DiscoveryError(
            "no Kubernetes API server: set api_server or kubeconfig, or run in a pod "
            f"(with a service account), or provide {path}"
        )
    return path


def _use_token_file(configuration: Configuration, path: str) -> None:
    next_read = 0.0

    def refresh(conf: Configuration) -> None:
        nonlocal next_read
        now = time.monotonic()
        if now < next_read:
            return
        next_read = now + TOKEN_REREAD_INTERVAL
        try:
            token = Path(path).read_text().strip()
        except OSError:
            return  # keep the last token; the API answers 401 if it is really gone
        if token:
            conf.api_key["BearerToken"] = f"Bearer {token}"

    refresh(configuration)
    configuration.refresh_api_key_hook = refresh
