"""Helpers for tests whose pods run for real on the local cluster's real node.

Every request goes from this machine to a pod IP or a ClusterIP of the real node's subnet (kept on
the machine by the network guard), is bounded in count and time, and stops by itself.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.kube_helpers import apply, eventually, items
from tests.operator_fixtures import (
    chute_crd,
    operator,
    session_operator_paused,
    session_operator_paused_for_module,
)

__all__ = ["chute_crd", "operator", "session_operator_paused", "session_operator_paused_for_module"]

REQUEST_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def project_image(real_node: RealNode) -> str:
    """The project image's reference inside the node's containerd (operator, sidecar, modelsim)."""
    return real_node.images[0].ref


def real_chute(name: str, image: str, args: list[str], **spec: Any) -> dict[str, Any]:
    """A Chute that runs the simulated model server on the real node's simulated A10 GPU."""
    base: dict[str, Any] = {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "template": "custom",
        "command": ["chute-operator", "modelsim"],
        "args": ["--model", "sim", *args],
        "nodeSelector": {"gpuCount": 1, "include": ["a10"]},
        "resources": {"cpu": "100m", "memory": "256Mi", "sharedMemory": "16Mi"},
        "cache": {"size": "16Mi"},
        "monitoring": {"serviceMonitor": False},
    }
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> Answer:
    """One HTTP request (POST when there is a body); an error status is an answer, not an exception."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


def chat(
    base_url: str,
    text: str = "hello",
    api_key: str | None = None,
    max_tokens: int = 4,
    timeout: float = REQUEST_TIMEOUT,
) -> Answer:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return http(
        f"{base_url}/v1/chat/completions",
        {"model": "sim", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens},
        headers,
        timeout,
    )


def pods(cp: ControlPlane, name: str, namespace: str) -> list[dict[str, Any]]:
    return items(cp, "pod", namespace, f"app.kubernetes.io/instance={name}")


def running_pods(cp: ControlPlane, name: str, namespace: str) -> list[dict[str, Any]]:
    return [p for p in pods(cp, name, namespace) if not p["metadata"].get("deletionTimestamp")]


def container_status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
    return next((s for s in statuses if s.get("name") == container), {})


def wait_serving(cp: ControlPlane, name: str, namespace: str, timeout: float = 120) -> dict[str, Any]:
    """Wait until the Chute is Ready; its pod (on the real node)."""
    try:
        cp.kubectl(
            "wait", "--for=condition=Ready", f"chute/{name}", "-n", namespace, f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )  # fmt: skip
    except subprocess.SubprocessError as error:
        described = cp.kubectl("describe", "pods", "-n", namespace, check=False).stdout
        chute = cp.kubectl("get", "chute", name, "-n", namespace, "-o", "yaml", check=False).stdout
        raise AssertionError(f"Chute {name} not Ready: {error}\n{chute}\n{described}") from error
    return eventually(lambda: next(iter(running_pods(cp, name, namespace)), None), what=f"a pod of {name}")


def deploy(cp: ControlPlane, manifest: dict[str, Any], namespace: str) -> None:
    apply(cp, manifest, namespace)


def wait_for(probe: Any, what: str, timeout: float = 90.0) -> Any:
    return eventually(probe, what=what, timeout=timeout)


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))
