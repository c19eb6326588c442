"""Releases of the chart and image to the local registry, and what an upgrade in pods is read by:
shared by tests/realnode/test_chart_in_pods.py (its upgrade test) and benchmarks/install.py.

A later release is a staged copy of this checkout made as a release is made (docs/deployment.md,
Releasing): the version bumped in pyproject.toml and Chart.yaml, CHANGELOG.md's Unreleased entries
under it and, for a release whose sidecar changed, a line added to the sidecar's code with its new
fingerprint set in version.py and Chart.yaml. The copy's own ``scripts/release`` publishes it. The
real checkout is never written to. The install's steps are chute_devcluster/chart_install.py's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from chute_devcluster import chart_install
from chute_devcluster.images import build_base_image
from chute_devcluster.release import project_version, sidecar_fingerprint
from chute_shared.cluster import SIDECAR_CONTAINER
from tests.kube_helpers import condition, eventually, items
from tests.realnode.conftest import Answer, http

ROOT = Path(__file__).resolve().parents[1]
STAGED = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md")
OPERATOR_METRICS_PORT = 8081
RELEASE = "co"
COMPONENT = "app.kubernetes.io/component"


def selector(deployment: dict[str, Any]) -> str:
    """A Deployment's pod selector as a label selector string."""
    return chart_install.selector(deployment)


def chat(base_url: str, timeout: float = 30.0) -> Answer:
    """One chat completion from the simulated model (its name in modelsim's default)."""
    body = {"model": "chute-modelsim", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    return http(f"{base_url}/v1/chat/completions", body, timeout=timeout)


def next_version(version: str, step: int) -> str:
    """X.Y.Z with Z moved on by ``step``: a patch release after this checkout's."""
    major, minor, patch = version.split(".")
    return f"{major}.{minor}.{int(patch) + step}"


def stage_release(destination: Path, version: str, sidecar_change: str = "") -> Path:
    """A copy of this checkout released as ``version``; ``sidecar_change`` (a comment) added to the
    sidecar's code gives it a new sidecar tag, set where a release sets it."""
    root = destination / f"release-{version}"
    root.mkdir(parents=True)
    for name in STAGED:
        shutil.copy2(ROOT / name, root / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "operator", root / "operator", ignore=ignored)
    shutil.copytree(ROOT / "charts", root / "charts", ignore=ignored)
    (root / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "release", root / "scripts" / "release")
    (root / ".venv").symlink_to(ROOT / ".venv")  # scripts/release runs the copy's code with it
    old = project_version(ROOT)
    _replace(root / "pyproject.toml", f'\nversion = "{old}"\n', f'\nversion = "{version}"\n')
    chart = root / "charts" / "chute-operator" / "Chart.yaml"
    _replace(chart, f"\nversion: {old}\n", f"\nversion: {version}\n")
    _replace(chart, f'\nappVersion: "{old}"\n', f'\nappVersion: "{version}"\n')
    _replace(
        root / "CHANGELOG.md", "## [Unreleased]\n", f"## [Unreleased]\n\n## [{version}] - {date.today()}\n"
    )
    if sidecar_change:
        sidecar = root / "operator" / "chute_sidecar" / "__init__.py"
        sidecar.write_text(sidecar.read_text() + f"# {sidecar_change}\n")
        before, after = sidecar_fingerprint(ROOT), sidecar_fingerprint(root)
        _replace(root / "operator" / "chute_operator" / "version.py", f'"{before}"', f'"{after}"')
        _replace(chart, f"sidecar-{before}", f"sidecar-{after}")
    return root


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise AssertionError(f"{path.name}: expected {old!r} once")
    path.write_text(text.replace(old, new))


def publish(root: Path, registry: str, helm: Path, work: Path) -> dict[str, str]:
    """``root``'s scripts/release to the local cluster's registry (plain HTTP); what it published."""
    summary = work / f"published-{project_version(root)}.json"
    base = build_base_image()  # cached: the local Debian base (the public Python image cannot be pulled)
    result = subprocess.run(
        [str(root / "scripts" / "release"), registry, "--insecure", "--base-image", base.ref,
         "--helm", str(helm), "--summary", str(summary)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"scripts/release failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    published: dict[str, str] = json.loads(summary.read_text())
    return published


def image_bytes(registry: str, image: str) -> int:
    """The image's size as the registry stores it: its config and compressed layers (the manifest)."""
    repository, _, tag = image.removeprefix(f"{registry}/").rpartition(":")
    accept = (
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    )
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # the local registry
        manifest = json.load(response)
    return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])


def operator_leading(cp: Any, namespace: str, deployment: dict[str, Any], image: str) -> str | None:
    """The pod leading if every pod of the operator's Deployment runs ``image``, is Ready, and one of
    them holds the Lease; else None."""
    pods = [
        p
        for p in items(cp, "pod", namespace, selector(deployment))
        if not p["metadata"].get("deletionTimestamp")
    ]
    ready = [
        p for p in pods
        if condition(p, "Ready").get("status") == "True"
        and all(c["image"] == image for c in p["spec"]["containers"])
    ]  # fmt: skip
    if not pods or len(ready) != len(pods) or len(pods) != deployment["spec"]["replicas"]:
        return None
    names = {p["metadata"]["name"] for p in ready}
    holders = {((lease.get("spec") or {}).get("holderIdentity")) for lease in items(cp, "lease", namespace)}
    return next(iter(names & holders), None)


def helm_to(
    cp: Any,
    helm: chart_install.Helm,
    release: dict[str, str],
    namespace: str,
    values: Path,
    verb: str = "upgrade",
) -> dict[str, Any]:
    """``helm install`` or ``upgrade`` (``verb``) of the published ``release`` as the release ``co``;
    once every Deployment of it has rolled out and the operator's pod on its image leads, the
    operator's Deployment."""
    helm.run(
        verb, RELEASE, release["chart"], "--version", release["version"], "--plain-http",
        "-n", namespace, "-f", str(values),
    )  # fmt: skip
    deployments = items(cp, "deployment", namespace, f"app.kubernetes.io/instance={RELEASE}")
    for deployment in deployments:
        chart_install.rollout(cp.kubeconfig, deployment["metadata"]["name"], namespace)
    operator = next(d for d in deployments if d["metadata"]["labels"].get(COMPONENT) == "operator")
    eventually(
        lambda: operator_leading(cp, namespace, operator, release["image"]),
        what=f"the operator's pod on {release['image']} leading",
        timeout=120,
    )
    return operator


def pod_metric(pod_ip: str, name: str, port: int = OPERATOR_METRICS_PORT, **labels: str) -> float:
    """Sum of the samples of ``name`` (with ``labels``) an operator pod serves on its metrics port."""
    with urllib.request.urlopen(f"http://{pod_ip}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def sidecar_image(deployment: dict[str, Any]) -> str:
    """The image of the sidecar a Deployment's pod template runs."""
    containers = deployment["spec"]["template"]["spec"]["initContainers"]
    return str(next(c for c in containers if c["name"] == SIDECAR_CONTAINER)["image"])


def rolled_out(deployment: dict[str, Any]) -> bool:
    """Every replica of the Deployment's current template is there and available, no other is."""
    status, wanted = deployment.get("status") or {}, deployment["spec"].get("replicas", 1)
    return (
        (status.get("observedGeneration") or 0) >= deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == wanted
        and status.get("replicas") == wanted
        and status.get("availableReplicas") == wanted
    )


class Traffic:
    """Requests to each URL in turn, a new connection each, until stopped or ``limit`` are sent (at
    most one in flight); every answer's status is kept (``0`` and the error for no answer)."""

    def __init__(self, urls: dict[str, str], limit: int = 20000, pause: float = 0.05) -> None:
        self.urls, self.limit, self.pause = urls, limit, pause
        self.answers: list[tuple[str, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        for sent in range(self.limit):
            if self._stop.is_set():
                return
            name = list(self.urls)[sent % len(self.urls)]
            try:
                answer = chat(self.urls[name], timeout=10.0)
                self.answers.append(
                    (
                        name,
                        answer.status,
                        "" if answer.status == 200 else answer.body[:200].decode(errors="replace"),
                    )
                )
            except OSError as error:
                self.answers.append((name, 0, repr(error)))
            time.sleep(self.pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def failed(self) -> list[tuple[str, int, str]]:
        return [answer for answer in list(self.answers) if answer[1] != 200]

    def counts(self) -> dict[str, int]:
        return dict(Counter(name for name, status, _ in list(self.answers) if status == 200))
