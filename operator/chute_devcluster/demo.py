"""``chute-operator demo``: the local cluster, the operator (the chart in pods), examples, a real Chute.

With the real node (the default of ``dev up``) the operator runs as users run it: the image and the
chart published to the cluster's registry and the chart installed from there, the operator (two
replicas), its metrics API and the activator as pods on the real node
(:mod:`chute_devcluster.demo_operator`). One more Chute runs for real there: the demo sends it a few
requests through its Service and one over its concurrency limit (:mod:`chute_devcluster.demo_real`),
then shows its HPA reading its metric, scales it up under load, lets it go to zero and wakes it with
a request (:mod:`chute_devcluster.demo_autoscale`). ``--host-operator`` (and a cluster without a real
node) runs the operator as a host process instead, and stops after the requests. Each stage's
seconds are printed and written to ``demo-stages.json`` in the cluster's state dir.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chute_devcluster.binaries import toolset
from chute_devcluster.chart_install import items, kubectl
from chute_devcluster.demo_autoscale import story
from chute_devcluster.demo_operator import chart_operator, host_operator
from chute_devcluster.demo_real import REAL_CHUTE, real_chute, tell_story
from chute_devcluster.demo_stages import StageClock, write_report
from chute_devcluster.release import RELEASE_NAMESPACE
from chute_operator.api.reasons import READY

NAMESPACE = "chutes-demo"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RESULTS_FILE = "demo-stages.json"


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    return kubectl(kubeconfig, *args, input=input).stdout


def _chutes(kubeconfig: Path) -> list[dict[str, Any]]:
    return list(json.loads(_kubectl(kubeconfig, "get", "chutes", "-n", NAMESPACE, "-o", "json"))["items"])


def _ready(chute: dict[str, Any]) -> dict[str, Any]:
    for condition in (chute.get("status") or {}).get("conditions") or []:
        if condition.get("type") == READY:
            return dict(condition)
    return {}


def _table(chutes: list[dict[str, Any]]) -> str:
    rows = [("NAME", "READY", "REASON", "REPLICAS", "GPUS", "MESSAGE")]
    for chute in chutes:
        ready = _ready(chute)
        status = chute.get("status") or {}
        rows.append(
            (
                chute["metadata"]["name"],
                ready.get("status", "-"),
                ready.get("reason", "-"),
                f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}",
                str(chute["spec"].get("nodeSelector", {}).get("gpuCount", 1)),
                (ready.get("message") or "")[:70],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )


def _show(kubeconfig: Path) -> list[dict[str, Any]]:
    chutes = _chutes(kubeconfig)
    print(f"\n{time.strftime('%H:%M:%S')}\n{_table(chutes)}", flush=True)
    return chutes


def _wait_ready(kubeconfig: Path, timeout: float, operator: subprocess.Popen[bytes] | None) -> bool:
    """The live table until every Chute of the namespace is Ready (bounded); whether they all are."""
    deadline = time.monotonic() + timeout
    chutes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if operator is not None and operator.poll() is not None:
            print(f"the operator exited with {operator.returncode}; see {kubeconfig.parent / 'operator.log'}")
            return False
        chutes = _show(kubeconfig)
        if chutes and all(_ready(c).get("status") == "True" for c in chutes):
            _say(f"all {len(chutes)} Chutes are Ready")
            return True
        time.sleep(3)
    for chute in chutes:
        ready = _ready(chute)
        if ready.get("status") != "True":
            reason = ready.get("reason", "no status yet")
            print(f"NOT READY {chute['metadata']['name']}: {reason}: {ready.get('message', '')}")
    return False


def _apply_chutes(kubeconfig: Path, source: Path, real: dict[str, Any] | None) -> None:
    """The examples and, with a real node, the real Chute (deleted first: each run starts it afresh)."""
    _say(f"applying {source} into namespace {NAMESPACE}")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    _kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(namespace))
    _kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", str(source))
    if real is not None:
        _say(f"applying {REAL_CHUTE}: the simulated model server, for real on the real node")
        _kubectl(kubeconfig, "delete", "chute", REAL_CHUTE, "-n", NAMESPACE, "--ignore-not-found", "--wait")
        labels = f"app.kubernetes.io/instance={REAL_CHUTE}"
        deadline = time.monotonic() + 120  # its children too, or the new Chute would find them in its way
        while time.monotonic() < deadline and any(
            items(kubeconfig, k, NAMESPACE, labels) for k in ("deploy", "pod")
        ):
            time.sleep(1)
        _kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(real))


def _finish(clock: StageClock, kubeconfig: Path, results: Path | None, mode: str, passed: bool) -> None:
    print(f"\nstages ({mode}):\n{clock.table()}", flush=True)
    report = clock.report(command="chute-operator demo", mode=mode, completed=passed)
    write_report(report, kubeconfig.parent / RESULTS_FILE, *([results] if results else []))
    print(f"(written to {kubeconfig.parent / RESULTS_FILE}{f' and {results}' if results else ''})")


def demo_command(
    examples: str | None = None,
    timeout: float = 600.0,
    host_operator_mode: bool = False,
    real_node: bool = True,
    results: Path | None = None,
) -> int:
    """Run the whole demo; exit 0 once every stage has happened (every example Chute Ready, the answers,
    and in pods the HPA, the scale-up, zero and the wake)."""
    from chute_devcluster.binaries import BuildError, ensure_binaries
    from chute_devcluster.chart_install import HelmError, InstallError
    from chute_devcluster.cli import DevClusterError, ensure_dev_cluster, real_node_state, state_dir
    from chute_devcluster.images import ImageBuildError
    from chute_devcluster.realnode import RealNodeError, build_node_images, unavailable_reason
    from chute_devcluster.supervisor import read_state

    clock = StageClock()
    _say("the binaries and images (the first run builds Kubernetes, helm and the images: about 14 min)")
    before = read_state(state_dir()).get("pid")
    try:
        ensure_binaries()
        if real_node and unavailable_reason() is None:
            build_node_images()
        clock.done("binaries and images (built once, then cached)")
        _say("starting the local control plane")
        kubeconfig = ensure_dev_cluster(real_node=real_node)
    except (DevClusterError, BuildError, ImageBuildError, RealNodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    state = read_state(state_dir())
    started = state.get("pid") != before
    waited = float((state.get("milestones") or {}).get("real node: machine lock", 0.0)) if started else 0.0
    real = real_node_state()
    in_pods = real is not None and not host_operator_mode
    mode = "chart in pods" if in_pods else "host-process operator"
    _say(f"cluster up; kubeconfig: {kubeconfig}")
    if real:
        _say(f"real node {real['name']}: kubelet + containerd, simulated {real['gpu']} GPUs")
    up = (
        "control plane up"
        + (" with the real node" if real else "")
        + ("" if started else " (already running)")
    )
    clock.done(up, waited=waited if waited > 1 else 0.0)
    operator = None
    try:
        if real is not None and in_pods:
            published = chart_operator(kubeconfig, real["registry"], real["name"], _say, clock.done)
            image: str | None = f"{published['image']}@{published['image_digest']}"
        else:
            image = real["images"][-1] if real else None
            operator = host_operator(kubeconfig, image, _say)
            clock.done("CRD and host-process operator")
        chute = real_chute(image, scaling=in_pods) if image else None
        _apply_chutes(kubeconfig, Path(examples) if examples else EXAMPLES, chute)
        if not _wait_ready(kubeconfig, timeout, operator):
            _finish(clock, kubeconfig, results, mode, False)
            return 1
        clock.done("examples and the real Chute Ready")
        passed = True
        if chute is not None:
            service = json.loads(
                _kubectl(kubeconfig, "get", "service", REAL_CHUTE, "-n", NAMESPACE, "-o", "json")
            )
            tell_story(service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"], _say)
            clock.done("answers and a 429")
            if in_pods:
                passed = story(kubeconfig, NAMESPACE, REAL_CHUTE, chute["spec"], _say, clock.done)
            _show(kubeconfig)
    except (InstallError, HelmError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        _finish(clock, kubeconfig, results, mode, False)
        return 1
    _finish(clock, kubeconfig, results, mode, passed)
    where = f"pods in {RELEASE_NAMESPACE}" if in_pods else "in the background: operator.log"
    print(
        f"\nTry (kubectl: {toolset().kubectl}):\n  export KUBECONFIG={kubeconfig}\n"
        f"  kubectl get chutes,hpa -n {NAMESPACE}\n"
        f"  kubectl describe chute qwen3-8b-chat -n {NAMESPACE}\n"
        + (f"  kubectl get pods -n {RELEASE_NAMESPACE} -o wide\n" if in_pods else "")
        + f"The operator keeps running ({where}); stop everything with: chute-operator dev down"
    )
    return 0 if passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chute-operator demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", default=None, help="directory of Chutes to apply (default: examples/)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for Ready")
    parser.add_argument(
        "--host-operator",
        action="store_true",
        help="the operator as a host process instead of the chart's pods (no HPA, scale-up, zero or wake)",
    )
    parser.add_argument(
        "--no-real-node", action="store_true", help="a cluster without the real node (host-process operator)"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="also write each stage's seconds here (JSON)"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """``chute-operator demo [flags]``: the exit code."""
    args = build_parser().parse_args(argv)
    return demo_command(args.examples, args.timeout, args.host_operator, not args.no_real_node, args.results)
