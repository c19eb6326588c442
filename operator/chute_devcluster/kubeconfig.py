"""Self-contained kubeconfig files (certificates embedded, so the file works from anywhere)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster.pki import KeyPair

CLUSTER_NAME = "chute-dev"


def _embedded(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_document(server: str, ca_cert: Path, user: str, client: KeyPair) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _embedded(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _embedded(client.cert),
                    "client-key-data": _embedded(client.key),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, ca_cert: Path, user: str, client: KeyPair) -> Path:
    """Write the kubeconfig (readable by its owner only, as it holds a key) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(kubeconfig_document(server, ca_cert, user, client), sort_keys=False)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.chmod(0o600)
    temporary.replace(path)
    return path
