"""The local cluster's OCI registry: the distribution project's ``registry`` on loopback.

When the local cluster runs the real node, :class:`~chute_devcluster.controlplane.ControlPlane`
starts one registry (plain HTTP on ``127.0.0.1:<free port>``, filesystem storage under the cluster's
directory, its access log in ``<logs>/registry.log``), pushes the node's images into it with
``buildah push`` (:func:`chute_devcluster.images.push_image`) and hands the pushed references to the
node: its containerd (a host process, so loopback reaches the registry) pulls them when the kubelet
asks, as any node pulls from a registry. Pods name ``127.0.0.1:<port>/chute-operator:<tag>`` with
``imagePullPolicy: IfNotPresent``. The registry stops with the control plane; its storage goes with
the cluster's directory.

Anything else that speaks the distribution API can push to it too, e.g.
``scripts/release 127.0.0.1:<port> --insecure`` (``chute-operator dev status`` prints the address).
"""

from __future__ import annotations

import secrets
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REGISTRY_HOST = "127.0.0.1"
REGISTRY_ENV = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
"""The registry's OpenTelemetry exporter defaults to OTLP on localhost:4318; nothing listens there."""


def registry_config(storage: Path, address: str, secret: str | None = None) -> dict[str, Any]:
    """The registry's configuration: one plain-HTTP listener, filesystem storage, deletes allowed
    (a test can clean up), no debug listener, no upload purging, text logs with the access log on."""
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": address,
            "secret": secret or secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }


def registry_command(binary: Path, config: Path) -> list[str]:
    return [str(binary), "serve", str(config)]


def write_registry_config(root: Path, address: str) -> Path:
    """The config file under ``root`` (storage in ``root/storage``); its path."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(yaml.safe_dump(registry_config(root / "storage", address), sort_keys=False))
    return config


def registry_ready(host: str, timeout: float = 2.0) -> bool:
    """``GET /v2/`` answers 200: the registry serves the distribution API (no authentication)."""
    try:
        # plain http to the local registry on loopback (bandit B310)
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=timeout) as response:  # nosec B310
            return bool(response.status == 200)
    except OSError:
        return False


def repository_of(ref: str) -> str:
    """``localhost/chute-operator:1.0`` -> ``chute-operator:1.0`` (the name under the registry)."""
    first, _, rest = ref.partition("/")
    has_host = rest and ("." in first or ":" in first or first == "localhost")
    return rest if has_host else ref


def registry_ref(host: str, ref: str) -> str:
    """The reference of a locally built image once pushed to the registry at ``host``."""
    return f"{host}/{repository_of(ref)}"


def manifest_pulls(log: str, repository: str, user_agent: str = "containerd") -> list[str]:
    """The access-log lines of ``GET``/``HEAD`` requests for a manifest of ``repository`` made by a
    client whose User-Agent contains ``user_agent`` (containerd's: ``containerd/1.6.20...``)."""
    needle = f"/v2/{repository}/manifests/"
    return [
        line
        for line in log.splitlines()
        if needle in line and ('"GET ' in line or '"HEAD ' in line) and user_agent in line
    ]
