"""``chute-operator demo``: local cluster, simulated GPU nodes, the operator and the examples, until Ready.

With the real node (the default of ``dev up``), one more Chute runs for real there: the demo sends it
a few requests through its Service and one over its concurrency limit (:mod:`chute_devcluster.demo_real`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chute_devcluster.binaries import toolset
from chute_devcluster.demo_real import REAL_CHUTE, real_chute, tell_story
from chute_operator.api.reasons import READY
from chute_operator.crd import crd_yaml

NAMESPACE = "chutes-demo"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    result = subprocess.run(
        [str(toolset().kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def operator_pid_file(kubeconfig: Path) -> Path:
    return kubeconfig.parent / "operator.pid"


def stop_operator(kubeconfig: Path) -> None:
    """Stop a demo operator started earlier (if any)."""
    pid_file = operator_pid_file(kubeconfig)
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    pid_file.unlink(missing_ok=True)


def _start_operator(kubeconfig: Path, sidecar_image: str | None) -> subprocess.Popen[bytes]:
    stop_operator(kubeconfig)
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


def demo_command(examples: str | None = None, timeout: float = 600.0) -> int:
    """Run the whole demo; exit 0 once every example Chute is Ready."""
    from chute_devcluster.binaries import BuildError
    from chute_devcluster.cli import DevClusterError, ensure_dev_cluster, real_node_state
    from chute_devcluster.images import ImageBuildError

    _say("starting the local control plane (the first run builds Kubernetes and the images: ~15 min)")
    try:
        kubeconfig = ensure_dev_cluster()
    except (DevClusterError, BuildError, ImageBuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    real = real_node_state()
    project_image = real["images"][-1] if real else None
    _say(f"cluster up; kubeconfig: {kubeconfig}")
    if real:
        _say(f"real node {real['name']}: kubelet + containerd, simulated {real['gpu']} GPUs")
    _say("installing the Chute CRD")
    _kubectl(kubeconfig, "apply", "--server-side", "-f", "-", input=crd_yaml())
    _kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
    _say("starting the operator in the background (log: operator.log beside the kubeconfig)")
    operator = _start_operator(kubeconfig, project_image)
    source = Path(examples) if examples else EXAMPLES
    _say(f"applying {source} into namespace {NAMESPACE}")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    _kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(namespace))
    _kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", str(source))
    if project_image:
        _say(f"applying {REAL_CHUTE}: the simulated model server, for real on the real node")
        _kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(real_chute(project_image)))
    deadline = time.monotonic() + timeout
    chutes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            print(f"the operator exited with {operator.returncode}; see {kubeconfig.parent / 'operator.log'}")
            return 1
        chutes = _chutes(kubeconfig)
        print(f"\n{time.strftime('%H:%M:%S')}\n{_table(chutes)}", flush=True)
        if chutes and all(_ready(c).get("status") == "True" for c in chutes):
            _say(f"all {len(chutes)} Chutes are Ready")
            if project_image:
                service = json.loads(
                    _kubectl(kubeconfig, "get", "service", REAL_CHUTE, "-n", NAMESPACE, "-o", "json")
                )
                tell_story(service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"], _say)
                chutes = _chutes(kubeconfig)
                print(f"\n{time.strftime('%H:%M:%S')}\n{_table(chutes)}", flush=True)
            print(
                f"\nTry (kubectl: {toolset().kubectl}):\n  export KUBECONFIG={kubeconfig}\n"
                f"  kubectl get chutes -n {NAMESPACE}\n"
                f"  kubectl describe chute qwen3-8b-chat -n {NAMESPACE}\n"
                "The operator keeps running; stop everything with: chute-operator dev down"
            )
            return 0
        time.sleep(3)
    not_ready = [c for c in chutes if _ready(c).get("status") != "True"]
    for chute in not_ready:
        ready = _ready(chute)
        reason = ready.get("reason", "no status yet")
        print(f"NOT READY {chute['metadata']['name']}: {reason}: {ready.get('message', '')}")
    return 1
