"""How the operator logs in to the API server (kopf's login activity).

In a pod, kopf's own service-account login names the server ``https://kubernetes.default.svc``: a
cluster DNS name, which a cluster without DNS for its pods (or a pod whose resolver cannot reach it
yet) cannot resolve, and the operator exits after kopf's retries. client-go and lightkube (the
operator's own client) use ``KUBERNETES_SERVICE_HOST``/``_PORT``, the address of the ``kubernetes``
Service that the kubelet puts in every pod's environment; so does this login. Out of a pod (a
kubeconfig) kopf's kubeconfig login is used as before.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import kopf


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """``https://HOST:PORT`` of the ``kubernetes`` Service from a pod's environment, or None."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    if not host:
        return None
    port = environ.get("KUBERNETES_SERVICE_PORT", "").strip() or "443"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"https://{host}:{port}"


def has_kubeconfig(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KUBECONFIG")) or os.path.exists(os.path.expanduser("~/.kube/config"))


def log_in(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """A kubeconfig when there is one; else the pod's ServiceAccount at the ``kubernetes`` Service's
    address (not its DNS name)."""
    if has_kubeconfig(os.environ):
        return kopf.login_with_kubeconfig(settings=settings, **kwargs)
    info = kopf.login_with_service_account(settings=settings, **kwargs)
    server = in_cluster_server(os.environ)
    if info is not None and server is not None:
        info = dataclasses.replace(info, server=server)
    return info


login = kopf.on.login()(log_in)
"""The registered login activity (registered when this module is imported: handlers.py does)."""
