"""Small helpers for tests that talk to the local control plane through kubectl."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

T = TypeVar("T")


class Kubectl(Protocol):
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any: ...


class ControlPlaneAccess(Kubectl, Protocol):
    kubeconfig: Path


def service_account_kubeconfig(cp: ControlPlaneAccess, account: str, namespace: str, path: Path) -> Path:
    """A kubeconfig for the ServiceAccount ``namespace/account``: a fresh token (1 h), the admin
    kubeconfig's cluster."""
    token = cp.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(cp.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = dict(next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"])
    authority = cluster.get("certificate-authority")
    if authority and not Path(authority).is_absolute():
        cluster["certificate-authority"] = str(Path(cp.kubeconfig).parent / authority)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def get(cp: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    result = cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found", check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None


def items(cp: Kubectl, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", kind, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
    return list(json.loads(cp.kubectl(*args).stdout)["items"])


def eventually(probe: Callable[[], T | None], what: str = "condition", timeout: float = 90.0) -> T:
    """Poll until ``probe`` returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def apply(cp: Kubectl, manifest: dict[str, Any], namespace: str) -> None:
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def service_address(cp: Kubectl, name: str, namespace: str, timeout: float = 30.0) -> tuple[str, int]:
    """The Service's ClusterIP and first port, once it answers: kube-proxy writes a Service's rules a
    little after its pod is Ready (and after it is created), so a Service is never sent to before it
    accepts a connection. The only way the real-pod tests get a Service's address."""
    service = get(cp, "service", name, namespace)
    assert service is not None, f"no Service {name}"
    address = (service["spec"]["clusterIP"], int(service["spec"]["ports"][0]["port"]))

    def answers() -> bool:
        """A TCP connection only: no request reaches the model (some count their requests)."""
        try:
            socket.create_connection(address, timeout=5).close()
        except OSError:
            return False
        return True

    eventually(answers, what=f"Service {name} to answer", timeout=timeout)
    return address


def service_url(cp: Kubectl, name: str, namespace: str, timeout: float = 30.0) -> str:
    """The Service's URL once it answers (see service_address)."""
    host, port = service_address(cp, name, namespace, timeout)
    return f"http://{host}:{port}"
