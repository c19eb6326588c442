"""Installing and upgrading the chart in pods on the local cluster's real node (issue 26, item 4).

    .venv/bin/python benchmarks/install.py [--runs 3]
    .venv/bin/python benchmarks/install.py --doc-only   # the doc again, from the results

On a control plane with the real node (tests/scale_to_zero_harness.py ``real_node_cluster``), two
releases go to its registry with ``scripts/release``: A, this checkout, and B, the next patch
version staged as tests/upgrade_harness.py stages it (another operator image, the same sidecar).
Then per run, in a namespace of its own, with the values of tests/realnode/test_chart_in_pods.py but
one operator replica:

- ``helm install`` of A until every Deployment of the release has rolled out and the operator's pod
  leads (``kubectl rollout status``, then the Lease polled);
- a Chute applied (the simulated model on the node's simulated GPU, minInstances 1, a 1 s load)
  until it is Ready, timed from the start of ``helm install``;
- ``helm upgrade`` to B until B's operator pod leads in the same way, and the Chute's pod is checked
  untouched (same uid, no restart);
- ``helm uninstall``.

Image size is the registry's: the manifest's config and compressed layers. Writes
benchmarks/results/install.json and docs/benchmarks/install.md; tests/unit/test_docs.py checks that
the doc is the results file's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster.binaries import ensure_binaries
from chute_devcluster.controlplane import ControlPlane
from chute_operator.version import VERSION

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chart.helm import Helm  # noqa: E402
from tests.kube_helpers import apply, items  # noqa: E402
from tests.realnode.test_chart_in_pods import adopt_crd, release_to_local_registry, values  # noqa: E402
from tests.scale_to_zero_harness import chute, real_node_cluster  # noqa: E402
from tests.upgrade_harness import RELEASE, helm_to, image_bytes, next_version, publish, stage_release  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "install.json"
DOC = ROOT / "docs" / "benchmarks" / "install.md"
CHUTE = "first"
STEPS = (
    ("install_to_operator_ready_s", "`helm install` to the operator Ready and leading"),
    ("install_to_first_chute_ready_s", "`helm install` to the first Chute Ready"),
    ("upgrade_to_operator_ready_s", "`helm upgrade` A to B to B's operator Ready and leading"),
)


def _timed(action: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = action()
    return round(time.monotonic() - started, 1), result


def _chute_pod(cp: ControlPlane, namespace: str) -> tuple[str, int]:
    (pod,) = items(cp, "pod", namespace, f"app.kubernetes.io/instance={CHUTE}")
    statuses = (pod["status"].get("initContainerStatuses") or []) + pod["status"]["containerStatuses"]
    return pod["metadata"]["uid"], sum(s["restartCount"] for s in statuses)


def one_run(
    cp: ControlPlane, helm: Helm, a: dict[str, str], b: dict[str, str], index: int, scratch: Path
) -> dict[str, Any]:
    """Install A, a Chute, upgrade to B, uninstall, in the namespace ``install-INDEX``."""
    assert cp.real_node is not None
    namespace = f"install-{index}"
    cp.kubectl("create", "namespace", namespace)
    adopt_crd(cp, namespace)
    values_file = scratch / f"values-{index}.yaml"
    values_file.write_text(yaml.safe_dump({**values(namespace, cp.real_node), "replicaCount": 1}))
    began = time.monotonic()
    try:
        helm_to(cp, helm, a, namespace, values_file, "install")
        operator_ready = round(time.monotonic() - began, 1)
        manifest = chute(a["image"], cp.real_node.name, load_seconds=1.0, name=CHUTE)
        manifest["spec"].update({"minInstances": 1, "maxInstances": 1})
        apply(cp, manifest, namespace)
        cp.kubectl(
            "wait", "--for=condition=Ready", f"chute/{CHUTE}", "-n", namespace, "--timeout=180s", timeout=210
        )
        chute_ready = round(time.monotonic() - began, 1)
        pod = _chute_pod(cp, namespace)
        upgrade, _ = _timed(lambda: helm_to(cp, helm, b, namespace, values_file))
        after = _chute_pod(cp, namespace)
    finally:
        helm.run("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout=180s", check=False)
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return {
        "install_to_operator_ready_s": operator_ready,
        "install_to_first_chute_ready_s": chute_ready,
        "upgrade_to_operator_ready_s": upgrade,
        "chute_pod_kept": after[0] == pod[0],
        "chute_restarts_after_upgrade": after[1],
    }


def measure(runs: int) -> dict[str, Any]:
    with real_node_cluster("chute-install-") as (cp, scratch):
        binary = ensure_binaries().helm
        helm = Helm(binary, scratch / "helm-home").with_kubeconfig(cp.kubeconfig)
        staged = stage_release(scratch, next_version(VERSION, 1))
        release_a, a = _timed(lambda: release_to_local_registry(cp, helm, scratch))
        release_b, b = _timed(lambda: publish(staged, cp.registry, binary, scratch))
        results: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}",
            "load_average_before": round(os.getloadavg()[0], 1),
            "versions": [a["version"], b["version"]],
            "image_bytes": {
                a["version"]: image_bytes(cp.registry, a["image"]),
                b["version"]: image_bytes(cp.registry, b["image"]),
            },
            "release_s": {a["version"]: release_a, b["version"]: release_b},
            "runs": [],
        }
        for index in range(1, runs + 1):
            results["runs"].append(one_run(cp, helm, a, b, index, scratch))
            print(f"run {index}: {results['runs'][-1]}", file=sys.stderr, flush=True)
        results["load_average_after"] = round(os.getloadavg()[0], 1)
    return results


def _median(results: dict[str, Any], key: str) -> float:
    return float(statistics.median(run[key] for run in results["runs"]))


def summary(results: dict[str, Any]) -> str:
    """One sentence of the figures (docs/deployment.md quotes it)."""
    a = results["versions"][0]
    return (
        f"image {results['image_bytes'][a] / 1e6:.0f} MB in the registry (compressed layers); median of "
        f"{len(results['runs'])} runs: `helm install` to the operator Ready and leading "
        f"{_median(results, 'install_to_operator_ready_s'):.1f} s, to the first Chute Ready "
        f"{_median(results, 'install_to_first_chute_ready_s'):.1f} s, `helm upgrade` to the new operator "
        f"leading {_median(results, 'upgrade_to_operator_ready_s'):.1f} s"
    )


def doc(results: dict[str, Any]) -> str:
    a, b = results["versions"]
    rows = [f"| run | {' | '.join(what for _, what in STEPS)} | Chute pod kept, restarts |"]
    rows.append("| --- |" + " ---: |" * len(STEPS) + " --- |")
    for index, run in enumerate(results["runs"], 1):
        cells = " | ".join(f"{run[key]:.1f} s" for key, _ in STEPS)
        kept = "yes" if run["chute_pod_kept"] else "**no**"
        rows.append(f"| {index} | {cells} | {kept}, {run['chute_restarts_after_upgrade']} |")
    medians = " | ".join(f"**{_median(results, key):.1f} s**" for key, _ in STEPS)
    rows.append(f"| median | {medians} | |")
    sizes = ", ".join(f"{version} {size:,} B" for version, size in results["image_bytes"].items())
    released = ", ".join(f"{version} {seconds:.0f} s" for version, seconds in results["release_s"].items())
    when = (
        f"{results['date']}; {results['machine']}, load average {results['load_average_before']} "
        f"before and {results['load_average_after']} after"
    )
    return f"""# Installing and upgrading the chart

Generated by `benchmarks/install.py` from `benchmarks/results/{RESULTS.name}` ({when}). The chart and
image of release A ({a}, this checkout) and B ({b}, the next patch version, the same sidecar) are
published to the local cluster's registry with `scripts/release`,
then installed in pods on its real node (one operator replica, the activator and the metrics API on),
as the upgrade test in tests/realnode/test_chart_in_pods.py does.

In short: {summary(results)}.

Image size in the registry (config and compressed layers of the manifest): {sizes}. `scripts/release`
took {released}, a wait for another build on the machine included; B's dependency layer is built anew
unless buildah still has it, since a new version changes pyproject.toml, which that layer is built
from.

{chr(10).join(rows)}

Ready and leading: every Deployment of the release rolled out (`kubectl rollout status`) and the
operator's pod on the release's image holds the Lease. The Chute (the simulated model, a 1 s load) is
applied once the operator leads, so its time includes the operator's. The upgrade starts a new operator
pod while the old one keeps the Lease (`maxUnavailable: 0`); the new one leads once the old one has
stopped and released it. Other work on the machine kept its load average at the figures above: on
2 cores, anything above 2 slows every step.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--doc-only", action="store_true", help="write the doc from the results file")
    args = parser.parse_args()
    if not args.doc_only:
        RESULTS.write_text(json.dumps(measure(args.runs), indent=2) + "\n")
    DOC.write_text(doc(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
