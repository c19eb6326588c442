"""Running the chart through the real helm binary (the one the local control plane's toolset builds)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "chute-operator"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env(), timeout=180
        )
        if check and result.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return Helm(self.binary, self.home, kubeconfig)

    def template_text(
        self, *values: Path, sets: tuple[str, ...] = (), namespace: str = "chutes-system", release: str = "co"
    ) -> str:
        args = ["template", release, str(CHART), "-n", namespace]
        for path in values:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        return self.run(*args).stdout

    def template(
        self, *values: Path, sets: tuple[str, ...] = (), namespace: str = "chutes-system", release: str = "co"
    ) -> list[dict[str, Any]]:
        """Rendered objects (empty documents dropped)."""
        text = self.template_text(*values, sets=sets, namespace=namespace, release=release)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def template_error(self, *sets: str) -> str:
        """stderr of a `helm template` that must fail."""
        args = ["template", "co", str(CHART)]
        for item in sets:
            args += ["--set", item]
        result = self.run(*args, check=False)
        assert result.returncode != 0, f"helm template {' '.join(sets)} rendered, but must fail"
        return result.stderr


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def operator_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's Deployment (the activator has one of its own)."""
    found = [
        d
        for d in find(objects, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    assert len(found) == 1, f"expected one operator Deployment, got {len(found)}"
    return found[0]


def operator_service_account(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's ServiceAccount (the activator has one of its own)."""
    found = [
        a
        for a in find(objects, "ServiceAccount")
        if a["metadata"]["labels"].get("app.kubernetes.io/component") != "activator"
    ]
    assert len(found) == 1, f"expected one operator ServiceAccount, got {len(found)}"
    return found[0]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = operator_deployment(objects)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "operator")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (a string) or valueFrom (a dict)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
