"""The chart installed as users install it, on the local cluster's real node.

``scripts/release REGISTRY --insecure`` pushes the image and the chart to the cluster's registry;
``helm install oci://REGISTRY/charts/chute-operator --plain-http`` installs it with :func:`values`:
two operator replicas (leader election), the metrics API and the activator, all as pods on the real
node. Used by ``chute-operator demo`` and ``tests/realnode/test_chart_in_pods.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster.binaries import toolset
from chute_devcluster.images import REPOSITORY_ROOT, build_base_image
from chute_devcluster.release import RELEASE_NAME, RELEASE_NAMESPACE

CRD_NAME = "chutes.chutes.ai"
APISERVICE = "v1beta2.custom.metrics.k8s.io"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


class InstallError(RuntimeError):
    """A step of the install did not finish (a rollout, the leader, the APIService); the message says why."""


@dataclass(frozen=True)
class Helm:
    """The pinned helm with a home of its own (cache, config, registry logins) and, for a cluster, a
    kubeconfig."""

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

    def run(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env(), timeout=timeout
        )
        if check and result.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return dataclasses.replace(self, kubeconfig=kubeconfig)


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl against the cluster; with ``check`` a failure raises :class:`InstallError` with its stderr."""
    result = subprocess.run(
        [str(toolset().kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise InstallError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result


def get(kubeconfig: Path, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
    scope = ["-n", namespace] if namespace else []
    found = kubectl(kubeconfig, "get", kind, name, *scope, "-o", "json", "--ignore-not-found")
    return dict(json.loads(found.stdout)) if found.stdout.strip() else {}


def items(kubeconfig: Path, kind: str, namespace: str, labels: str = "") -> list[dict[str, Any]]:
    selected = ["-l", labels] if labels else []
    found = kubectl(kubeconfig, "get", kind, "-n", namespace, *selected, "-o", "json")
    return list(json.loads(found.stdout)["items"])


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The object's status condition of that type ({} if it has none)."""
    found = ((obj.get("status") or {}).get("conditions")) or []
    return next((dict(c) for c in found if c.get("type") == kind), {})


def _until(check: Callable[[], Any], what: str, timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise InstallError(f"no {what} within {timeout:.0f}s")
        time.sleep(interval)


# -- publishing ---------------------------------------------------------------------------------------


def release_command(registry: str, helm: Path, summary: Path) -> list[str]:
    """``scripts/release`` to the cluster's plain-HTTP registry, on the local Debian base image (the
    public Python image cannot be pulled here); built once, cached."""
    base = build_base_image()
    return [
        str(REPOSITORY_ROOT / "scripts" / "release"), registry, "--insecure", "--base-image", base.ref,
        "--helm", str(helm), "--summary", str(summary),
    ]  # fmt: skip


def publish(registry: str, helm: Path, work: Path, log: Path | None = None) -> dict[str, str]:
    """Run ``scripts/release`` against the cluster's registry; what it published (image, chart, digests).
    Its output goes to ``log`` (or is kept for the error)."""
    summary = work / "release.json"
    command = release_command(registry, helm, summary)
    if log is None:
        captured = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        returncode, output = captured.returncode, f"{captured.stdout[-3000:]}\n{captured.stderr[-3000:]}"
    else:
        with log.open("a") as out:
            returncode = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False
            ).returncode
        output = f"see {log}"
    if returncode != 0:
        raise InstallError(f"scripts/release exited {returncode}: {output}")
    published: dict[str, str] = json.loads(summary.read_text())
    return published


# -- the install --------------------------------------------------------------------------------------


def values(node: str, watch_namespaces: Sequence[str] = (), image_digest: str = "") -> dict[str, Any]:
    """The user's values: two operator replicas and one activator, as pods on the real node ``node`` (it
    carries the GPU taint; the simulated nodes run no real pods), watching ``watch_namespaces`` (none:
    every namespace); ``image_digest`` pins the image published (a release of the same version pushed
    again after a code change has the same tag)."""
    chart_values: dict[str, Any] = {
        "replicaCount": 2,
        "watchNamespaces": list(watch_namespaces),
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [GPU_TOLERATION],
        "operator": {"logFormat": "text"},
        "metricsApi": {"enabled": True, "scrapeIntervalSeconds": 2},
        "activator": {"enabled": True, "replicaCount": 1},
        "image": {"pullPolicy": "IfNotPresent"},
    }
    if image_digest:
        chart_values["image"]["digest"] = image_digest
    return chart_values


def adopt_crd(kubeconfig: Path, namespace: str, release: str = RELEASE_NAME) -> None:
    """A CRD installed with kubectl (the tests' session, the host-process demo): let the release take it
    over, as helm wants (it is kept at uninstall)."""
    if not get(kubeconfig, "crd", CRD_NAME):
        return
    kubectl(
        kubeconfig, "annotate", "--overwrite", "crd", CRD_NAME,
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip
    kubectl(kubeconfig, "label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")


def _cluster(helm: Helm) -> Path:
    if helm.kubeconfig is None:
        raise InstallError("helm needs the cluster's kubeconfig (Helm.with_kubeconfig)")
    return helm.kubeconfig


def installed(helm: Helm, namespace: str = RELEASE_NAMESPACE, release: str = RELEASE_NAME) -> bool:
    return helm.run("status", release, "-n", namespace, check=False).returncode == 0


def install_command(
    published: dict[str, str], values_file: Path, upgrade: bool, namespace: str = RELEASE_NAMESPACE,
    release: str = RELEASE_NAME,
) -> list[str]:  # fmt: skip
    """``helm install`` (``upgrade``: ``helm upgrade``) of the published chart with the values file."""
    return [
        "upgrade" if upgrade else "install", release, published["chart"], "--version", published["version"],
        "--plain-http", "-n", namespace, "--create-namespace", "-f", str(values_file),
    ]  # fmt: skip


def install(
    helm: Helm, published: dict[str, str], chart_values: dict[str, Any], work: Path,
    namespace: str = RELEASE_NAMESPACE, release: str = RELEASE_NAME, say: Callable[[str], None] | None = None,
) -> list[str]:  # fmt: skip
    """Install the published chart, or upgrade it if the release exists; the helm arguments it ran."""
    kubeconfig = _cluster(helm)
    values_file = work / "values.yaml"
    values_file.write_text(yaml.safe_dump(chart_values))
    upgrade = installed(helm, namespace, release)
    if not upgrade:
        adopt_crd(kubeconfig, namespace, release)
    args = install_command(published, values_file, upgrade, namespace, release)
    if say is not None:
        say(shlex.join(["helm", *args]))
    helm.run(*args, timeout=300)
    return args


def uninstall(helm: Helm, namespace: str = RELEASE_NAMESPACE, release: str = RELEASE_NAME) -> None:
    helm.run("uninstall", release, "-n", namespace, "--wait", "--timeout=120s", check=False)


def deployments(
    helm: Helm, namespace: str = RELEASE_NAMESPACE, release: str = RELEASE_NAME
) -> dict[str, Any]:
    """The release's Deployments by name (the operator's and the activator's)."""
    manifest = helm.run("get", "manifest", release, "-n", namespace).stdout
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}


def component(found: dict[str, Any], name: str) -> str:
    """The Deployment of a component (``operator``, ``activator``) among :func:`deployments`."""
    return next(
        deployment_name
        for deployment_name, deployment in found.items()
        if deployment["metadata"]["labels"].get("app.kubernetes.io/component") == name
    )


def selector(deployment: dict[str, Any]) -> str:
    """A Deployment's pod selector as a label selector string."""
    labels = deployment["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in labels.items())


def pod_selector(deployment: dict[str, Any]) -> str:
    """Its own pods: the selector and the component label (the operator's selector matches the
    activator's pods too)."""
    own = deployment["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
    return selector(deployment) + (f",app.kubernetes.io/component={own}" if own else "")


def rollout(kubeconfig: Path, deployment: str, namespace: str, timeout: int = 240) -> None:
    """Wait for a Deployment's rollout; on failure the pods' description and logs are in the error."""
    result = kubectl(
        kubeconfig, "rollout", "status", f"deployment/{deployment}", "-n", namespace, f"--timeout={timeout}s",
        check=False, timeout=timeout + 30,
    )  # fmt: skip
    if result.returncode != 0:
        described = kubectl(kubeconfig, "describe", "pods", "-n", namespace, check=False).stdout
        logs = kubectl(
            kubeconfig, "logs", "-n", namespace, f"deployment/{deployment}", "--all-containers", "--tail=60",
            check=False,
        )  # fmt: skip
        raise InstallError(
            f"{deployment} not rolled out: {result.stderr}\n{described[-6000:]}\n{logs.stdout}{logs.stderr}"
        )


def ready_pod_ips(kubeconfig: Path, namespace: str, labels: str) -> list[str]:
    """IPs of the pods with those labels that are Ready and not being deleted, oldest first."""
    found = sorted(
        items(kubeconfig, "pod", namespace, labels), key=lambda p: p["metadata"]["creationTimestamp"]
    )
    return [
        pod["status"]["podIP"]
        for pod in found
        if not pod["metadata"].get("deletionTimestamp") and condition(pod, "Ready").get("status") == "True"
    ]


def leader(kubeconfig: Path, namespace: str, pods: set[str], timeout: float = 60) -> str:
    """The operator pod that holds the Lease, once one does."""
    return str(
        _until(
            lambda: next(
                (
                    holder
                    for lease in items(kubeconfig, "lease", namespace)
                    if (holder := (lease.get("spec") or {}).get("holderIdentity")) in pods
                ),
                None,
            ),
            "operator pod leading",
            timeout,
        )
    )


def wait_apiservice(kubeconfig: Path, timeout: float = 120) -> None:
    """The chart's metrics APIService Available (the API server reaches the operator pods' metrics API)."""
    _until(
        lambda: condition(get(kubeconfig, "apiservice", APISERVICE), "Available").get("status") == "True",
        f"{APISERVICE} Available",
        timeout,
    )


@dataclass(frozen=True)
class Running:
    """The release once its pods run: its Deployments by name, which is whose, and the leading pod."""

    deployments: dict[str, Any]
    operator: str
    activator: str
    leader: str

    def operator_pods(self, kubeconfig: Path, namespace: str = RELEASE_NAMESPACE) -> list[dict[str, Any]]:
        return items(kubeconfig, "pod", namespace, pod_selector(self.deployments[self.operator]))


def wait_running(
    helm: Helm, namespace: str = RELEASE_NAMESPACE, release: str = RELEASE_NAME,
    mark: Callable[[str], object] = lambda _: None,
) -> Running:  # fmt: skip
    """Wait for every Deployment of the release to roll out, an operator pod to lead and the metrics
    APIService to be Available; ``mark`` is called after each ("pods Ready", "leader", "APIService
    Available")."""
    kubeconfig = _cluster(helm)
    found = deployments(helm, namespace, release)
    for name in found:
        rollout(kubeconfig, name, namespace)
    mark("pods Ready")
    operator = component(found, "operator")
    own = pod_selector(found[operator])
    pods = {pod["metadata"]["name"] for pod in items(kubeconfig, "pod", namespace, own)}
    holder = leader(kubeconfig, namespace, pods)
    mark("leader")
    wait_apiservice(kubeconfig)
    mark("APIService Available")
    return Running(found, operator, component(found, "activator"), holder)
