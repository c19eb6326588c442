"""The demo's operator, one of two ways: the chart as users install it (pods on the real node), or a
host process (``--host-operator``, and without a real node). Starting one stops the other."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from chute_devcluster import chart_install
from chute_devcluster.binaries import toolset
from chute_devcluster.chart_install import Helm
from chute_devcluster.release import RELEASE_NAMESPACE
from chute_operator.crd import crd_yaml

Say = Callable[[str], None]


def _helm(kubeconfig: Path) -> Helm:
    """The pinned helm, its home beside the kubeconfig (in the cluster's state dir: gone at dev down)."""
    return Helm(toolset().helm, kubeconfig.parent / "helm", kubeconfig)


def operator_pid_file(kubeconfig: Path) -> Path:
    return kubeconfig.parent / "operator.pid"


def stop_host_operator(kubeconfig: Path) -> None:
    """Stop a host-process operator started earlier (if any)."""
    pid_file = operator_pid_file(kubeconfig)
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    pid_file.unlink(missing_ok=True)


def host_operator(kubeconfig: Path, sidecar_image: str | None, say: Say) -> subprocess.Popen[bytes]:
    """The CRD applied with kubectl and ``chute-operator run`` in the background (log: operator.log
    beside the kubeconfig); an installed release of the chart is uninstalled first."""
    helm = _helm(kubeconfig)
    if helm.binary.exists() and chart_install.installed(helm):
        say(f"uninstalling the chart's release from {RELEASE_NAMESPACE} (one operator at a time)")
        chart_install.uninstall(helm)
    say("installing the Chute CRD")
    chart_install.kubectl(
        kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", input=crd_yaml()
    )
    chart_install.kubectl(
        kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{chart_install.CRD_NAME}"
    )
    say("starting the operator in the background (log: operator.log beside the kubeconfig)")
    stop_host_operator(kubeconfig)
    log = (kubeconfig.parent / "operator.log").open("ab")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "CHUTE_OPERATOR_LOG_FORMAT": "text"}
    if sidecar_image:  # real-node pods: the sidecar from the project image (local registry)
        env["CHUTE_OPERATOR_SIDECAR_IMAGE"] = sidecar_image
    env.setdefault("CHUTE_OPERATOR_LEASE_NAMESPACE", "default")
    process = subprocess.Popen(
        [sys.executable, "-m", "chute_operator", "run", "--all-namespaces"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    operator_pid_file(kubeconfig).write_text(str(process.pid))
    return process


def chart_operator(
    kubeconfig: Path, registry: str, node: str, say: Say, mark: Callable[[str], object]
) -> dict[str, str]:
    """``scripts/release`` to the cluster's registry, then ``helm install`` (``upgrade`` when installed)
    of the chart from there, and its pods running; what was published. ``mark`` closes each stage."""
    stop_host_operator(kubeconfig)
    state = kubeconfig.parent
    helm = _helm(kubeconfig)
    work = state / "chart"
    work.mkdir(parents=True, exist_ok=True)
    say(f"publishing the image and the chart to the cluster's registry {registry} (log: release.log):")
    print(
        f"  $ {' '.join(chart_install.release_command(registry, helm.binary, work / 'release.json'))}",
        flush=True,
    )
    published = chart_install.publish(registry, helm.binary, work, log=state / "release.log")
    print(
        f"  image {published['image']}@{published['image_digest']}\n  chart {published['chart']}", flush=True
    )
    mark("image and chart published to the local registry")
    say("installing the chart: two operator replicas (leader election), the metrics API, the activator")
    chart_values = chart_install.values(node, image_digest=published["image_digest"])
    chart_install.install(
        helm, published, chart_values, work, say=lambda line: print(f"  $ {line}", flush=True)
    )
    mark("helm install")

    def done(step: str) -> None:
        mark(f"operator: {step}")

    running = chart_install.wait_running(helm, mark=done)
    print(
        chart_install.kubectl(kubeconfig, "get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide").stdout,
        end="",
        flush=True,
    )
    say(f"the operator leading: {running.leader}; {chart_install.APISERVICE} Available")
    return published
