"""How fast the operator's custom metrics API lets the HPA scale a Chute up and down.

    .venv/bin/python benchmarks/autoscaling.py [--runs 3] [--real-node]

SIMULATION (see docs/autoscaling.md): a local control plane with kwok nodes, the real HPA controller
(kube-controller-manager, default 15 s sync), the operator's metrics API aggregated by the real
kube-apiserver on loopback, and a real sidecar + modelsim on loopback standing in for the Chute's
first pod. Per run: a Chute (concurrency 4, threshold 0.5, 1-3 replicas, shutdownAfterSeconds 60)
gets 4 streams held open at a random point of the HPA's sync cycle; measured are the seconds from
load start to the HPA's decision (desiredReplicas 2) and to the second replica Ready (a kwok pod:
Ready at once, so no model load time is included), then from load end to the scale-down to 1.
Writes benchmarks/results/autoscaling.json.

With ``--real-node``: the Chute's pods run on the local cluster's real node (kubelet, containerd;
the project image's modelsim behind the real sidecar) and the scraper dials their pod IPs. The load
keeps every ready pod full (4 streams on each pod's IP, up to 12), so the HPA wants 2, then 4, then
6 replicas: more than maxInstances 3. Measured besides: load start to the 2nd and 3rd replicas Ready
(real container starts), to the HPA saying it wants more than maxInstances (ScalingLimited
TooManyReplicas); load end to 2 and to 1 replica (one replica a minute after the 60 s window). A
sampler reads the Deployment's replicas, the HPA's desired replicas and the pods every second:
their highest values are recorded. ``--add`` appends the runs to the results file (same setup
only), so runs can be made one at a time and the machine's one real node released in between.
Writes benchmarks/results/autoscaling-real-node.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.autoscaling_load import FullReplicas, ReplicaSampler, ready_pod_ips  # noqa: E402
from tests.kube_helpers import apply, condition, eventually, get, items  # noqa: E402
from tests.metrics_api_harness import (  # noqa: E402
    CONCURRENCY,
    LoopbackSidecar,
    Streams,
    autoscaled_chute,
    metrics_api_on_loopback,
    real_node_chute,
)

from chute_devcluster.binaries import ensure_binaries  # noqa: E402
from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.realnode import build_node_images  # noqa: E402
from chute_devcluster.realnode_config import RealNodeSettings  # noqa: E402

SELECTOR = "chutes.ai/chute=bench"
RESULTS = ROOT / "benchmarks" / "results" / "autoscaling.json"
REAL_NODE_RESULTS = ROOT / "benchmarks" / "results" / "autoscaling-real-node.json"
MAX_INSTANCES = 3  # real_node_chute's
FOR_COMPARISON = {"keda_default_polling_interval_s": 30, "kubeai_default_averaging_window_s": 600}


def spec_field(cp: ControlPlane, kind: str, namespace: str, *path: str) -> Any:
    """A field of the object ``bench`` of ``kind`` (None while absent)."""
    value: Any = get(cp, kind, "bench", namespace)
    for key in path:
        value = (value or {}).get(key)
    return value


def replicas_of(cp: ControlPlane, namespace: str) -> Any:
    return spec_field(cp, "deployment", namespace, "spec", "replicas")


def ready_replicas(cp: ControlPlane, namespace: str) -> Any:
    return spec_field(cp, "deployment", namespace, "status", "readyReplicas")


def one_run(cp: ControlPlane, index: int, work: Path, image: str | None) -> dict[str, Any]:
    """One scale-up and scale-down. ``image``: on the real node (that image's modelsim), else simulated."""
    namespace = f"bench-autoscaling-{index}"
    cp.kubectl("create", "namespace", namespace)
    eventually(lambda: get(cp, "serviceaccount", "default", namespace), what="default ServiceAccount")
    run_dir = work / namespace
    run_dir.mkdir()
    sidecar = None if image else LoopbackSidecar(run_dir)
    try:
        # On the real node the sidecar must be the imported project image.
        env = {"CHUTE_OPERATOR_SIDECAR_IMAGE": image} if image else {}
        with metrics_api_on_loopback(cp, namespace, run_dir, **env) as (_, overrides):
            node = cp.real_node_settings.name if cp.real_node_settings else ""
            apply(
                cp, real_node_chute("bench", image, node) if image else autoscaled_chute("bench"), namespace
            )

            def serving_pods() -> list[dict[str, Any]]:
                pods = items(cp, "pods", namespace, SELECTOR)
                return [p for p in pods if condition(p, "Ready").get("status") == "True"]

            try:
                pod = eventually(serving_pods, what="the Chute's pod Ready", timeout=300)[0]
            except AssertionError:
                print(cp.kubectl("describe", "pods", "-n", namespace, check=False).stdout, flush=True)
                raise
            if sidecar is not None:
                key = f"{namespace}/{pod['metadata']['name']}"
                overrides.write_text(json.dumps({key: f"127.0.0.1:{sidecar.metrics_port}"}))
            eventually(
                lambda: (
                    condition(get(cp, "hpa", "bench", namespace), "ScalingActive").get("status") == "True"
                ),
                what="ScalingActive",
                timeout=180,
            )
            # Load arrives at a random point of the HPA controller's 15 s sync cycle (ScalingActive
            # was just written by a sync: starting at once would always measure the worst case).
            time.sleep(random.uniform(0, 15))
            if sidecar is not None:
                return simulated_load(cp, namespace, sidecar.streams)
            return real_node_load(cp, namespace)
    finally:
        if sidecar is not None:
            sidecar.stop()
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def simulated_load(cp: ControlPlane, namespace: str, load: Streams) -> dict[str, Any]:
    """4 streams on the one pod with a (loopback) sidecar: the HPA wants 2."""
    started = time.monotonic()
    load.start(4)
    eventually(
        lambda: spec_field(cp, "hpa", namespace, "status", "desiredReplicas") == 2,
        what="HPA desires 2",
        timeout=120,
    )
    decided = time.monotonic() - started
    eventually(lambda: ready_replicas(cp, namespace) == 2, what="2 ready", timeout=300)
    ready = time.monotonic() - started
    most = replicas_of(cp, namespace)
    load.close()
    idle = time.monotonic()
    eventually(lambda: replicas_of(cp, namespace) == 1, what="back to 1", timeout=240)
    down = time.monotonic() - idle
    return {
        "to_decision_s": round(decided, 1),
        "to_second_ready_s": round(ready, 1),
        "to_scale_down_s": round(down, 1),
        "replicas_at_peak": most,
    }


def wait_ready_and_fill(cp: ControlPlane, namespace: str, load: FullReplicas, count: int) -> None:
    """Wait for ``count`` ready replicas, then load each of them."""
    eventually(lambda: (ready_replicas(cp, namespace) or 0) >= count, what=f"{count} ready", timeout=300)
    eventually(
        lambda: load.fill(ready_pod_ips(cp, "bench", namespace)) >= count,
        what=f"{count} pods loaded",
        timeout=60,
    )


def real_node_load(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    """Every ready pod kept full (4 streams on its IP) until the HPA wants more than maxInstances and
    one more HPA sync has passed; replicas sampled every second throughout."""
    load = FullReplicas(max_pods=MAX_INSTANCES)
    marks: dict[str, float] = {}
    with ReplicaSampler(cp, "bench", namespace, interval=1.0, limit=600) as sampler:
        started = time.monotonic()
        try:
            load.fill(ready_pod_ips(cp, "bench", namespace))
            eventually(
                lambda: spec_field(cp, "hpa", namespace, "status", "desiredReplicas") == 2,
                what="HPA desires 2",
                timeout=120,
            )
            marks["to_decision_s"] = time.monotonic() - started
            for count, key in ((2, "to_second_ready_s"), (3, "to_third_ready_s")):
                wait_ready_and_fill(cp, namespace, load, count)
                marks[key] = time.monotonic() - started
            eventually(
                lambda: (
                    condition(get(cp, "hpa", "bench", namespace), "ScalingLimited").get("reason")
                    == "TooManyReplicas"
                ),
                what="the HPA wanting more than maxInstances",
                timeout=60,
            )
            time.sleep(16)  # one more HPA sync while it wants more than maxInstances
        finally:
            load.close()
        idle = time.monotonic()
        eventually(lambda: replicas_of(cp, namespace) == 2, what="down to 2", timeout=180)
        marks["load_end_to_two_replicas_s"] = time.monotonic() - idle
        eventually(lambda: replicas_of(cp, namespace) == 1, what="down to 1", timeout=180)
        marks["load_end_to_one_replica_s"] = time.monotonic() - idle
    # Sample times count from the sampler's start, just before the load's.
    limited = sampler.limited_samples("TooManyReplicas")
    if limited:
        marks["to_hpa_wanting_more_than_max_s"] = limited[0]["t"] - (started - sampler.started)
    return {
        **{key: round(value, 1) for key, value in marks.items()},
        "samples_with_hpa_wanting_more_than_max": len(limited),
        "replicas_in_those_samples": sorted({s["replicas"] for s in limited}),
        "streams_at_peak": MAX_INSTANCES * CONCURRENCY,
        "replicas_at_peak": sampler.most("replicas"),
        "hpa_desired_at_peak": sampler.most("desired"),
        "pods_at_peak": sampler.most("pods"),
        "hpa_said_too_many_replicas": sampler.saw_limited("TooManyReplicas"),
        "samples": len(sampler.samples),
    }


def summary(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [run[key] for run in runs]
    return {"min": min(values), "median": round(statistics.median(values), 1), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--real-node", action="store_true", help="real pods on the real node instead of the simulation"
    )
    parser.add_argument(
        "--add", action="store_true", help="--real-node: add the runs to the results file's (same setup)"
    )
    args = parser.parse_args()
    tools = ensure_binaries()
    runs: list[dict[str, Any]] = []
    image = None
    options: dict[str, Any] = {}
    if args.real_node:
        images = build_node_images()
        options = {
            "real_node": RealNodeSettings.from_env(),
            "real_node_images": images,
            "startup_timeout": 600,
        }
        options["real_node_lock_timeout"] = 900
    with (
        tempfile.TemporaryDirectory(prefix="bench-autoscaling-") as scratch,
        ControlPlane(tools=tools, **options) as cp,
    ):
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        if cp.real_node is not None:
            image = cp.project_image()
        for index in range(args.runs):
            runs.append(one_run(cp, index, Path(scratch), image))
            print(f"run {index + 1}: {runs[-1]}", flush=True)
    if args.real_node:
        setup = (
            "real node: real pods (project image: modelsim behind the sidecar), the operator's scraper "
            "dialling their pod IPs; real kube-apiserver aggregation and HPA controller (15 s sync), "
            "scrape interval 1 s, concurrency 4, threshold 0.5, maxInstances 3, shutdownAfterSeconds 60; "
            "load: 4 streams on each ready pod's IP (up to 12); replicas sampled every 1 s"
        )
        target = REAL_NODE_RESULTS
        if args.add and target.exists():
            earlier = json.loads(target.read_text())
            if earlier.get("setup") == setup:
                runs = earlier["runs"] + runs
        result = {
            "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
            "setup": setup,
            "runs": runs,
            **{
                name: summary(runs, key)
                for name, key in (
                    ("load_start_to_hpa_decision_s", "to_decision_s"),
                    ("load_start_to_second_replica_ready_s", "to_second_ready_s"),
                    ("load_start_to_third_replica_ready_s", "to_third_ready_s"),
                    ("load_start_to_hpa_wanting_more_than_max_s", "to_hpa_wanting_more_than_max_s"),
                    ("load_end_to_two_replicas_s", "load_end_to_two_replicas_s"),
                    ("load_end_to_one_replica_s", "load_end_to_one_replica_s"),
                )
            },
            "most_replicas (maxInstances 3)": max(run["replicas_at_peak"] for run in runs),
            "most_pods": max(run["pods_at_peak"] for run in runs),
            "hpa_wanted_more_than_max_in_every_run": all(run["hpa_said_too_many_replicas"] for run in runs),
            "for_comparison": FOR_COMPARISON,
        }
    else:
        target = RESULTS
        result = {
            "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
            "setup": "simulation: kwok pods, real sidecar on loopback; real kube-apiserver aggregation and "
            "HPA controller (15 s sync), scrape interval 1 s, concurrency 4, threshold 0.5, 4 streams",
            "runs": runs,
            "load_start_to_hpa_decision_s": summary(runs, "to_decision_s"),
            "load_start_to_second_replica_ready_s": summary(runs, "to_second_ready_s"),
            "load_end_to_scale_down_s (shutdownAfterSeconds 60)": summary(runs, "to_scale_down_s"),
            "most_replicas (maxInstances 3)": max(run["replicas_at_peak"] for run in runs),
            "for_comparison": FOR_COMPARISON,
        }
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
