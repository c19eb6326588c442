"""Running the chart through the real helm binary (the one the local control plane's toolset builds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster import chart_install as chute_helm
from chute_devcluster.chart_install import HelmError

__all__ = ["Helm", "HelmError"]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "chute-operator"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))


@dataclass(frozen=True)
class Helm(chute_helm.Helm):
    """The pinned helm (``chart_install.Helm``) with the chart's own rendering helpers."""

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
