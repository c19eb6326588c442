"""Scale to zero and back on the local cluster's real node: idle -> 0 replicas -> a request wakes it.

    .venv/bin/python benchmarks/scale_to_zero.py [--runs 5] [--load-seconds 8] [--label NAME]
    .venv/bin/python benchmarks/scale_to_zero.py --data-path [--requests 200] [--rounds 3]

A local control plane with its real node (kubelet, containerd, kube-proxy), the operator with its
metrics API (its scraper reads the real pods' sidecars), and a real activator process on the host
that dials the real pod IPs. The Chute (minInstances 0, maxInstances 2, shutdownAfterSeconds 60)
runs the project image's modelsim with ``--load-seconds`` behind the real sidecar on the real node.
Per run: from the pod Ready to replicas 0 and the pod gone, then one request sent to the activator
(``Host: bench.NAMESPACE.svc.cluster.local``) while at zero, timed to its 200. The added delay is
that time minus the model's load time: the operator's reaction, the pod's scheduling and container
start, the readiness probe, the EndpointSlice's propagation and the activator. The request reaches
the activator directly on loopback, not through the Service's ClusterIP (the activator runs on the
host, whose address cannot be an endpoint). Each request is broken down into the moments it passed
(tests/scale_to_zero_harness.py STAGES: the activator's record of the wake, a watch of the pods and
the Deployment, the containers' log timestamps), in seconds after it was sent; the summary has the
median of each stage and the p95 (nearest rank) of the added delay. Writes
benchmarks/results/scale-to-zero-real-node.json (``--label`` adds ``-NAME`` to the file's name).

``--data-path``: the same setup, no idle window. Once the Chute's replica is ready (the operator has
removed its activator slice and kube-proxy its rule to the activator), ``--requests`` sequential
small completions to the Chute Service's ClusterIP, a new connection each, with the activator
process running and then stopped, alternating for ``--rounds`` rounds; while it runs, the same
requests sent to the activator itself (its address, the Chute's Host) for comparison: what a
request pays when it does pass the activator. The activator's own counters are read before and
after each round. Writes benchmarks/results/scale-to-zero-data-path-real-node.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube_helpers import apply, condition, eventually, get, items, service_address  # noqa: E402
from tests.metrics_api_harness import metrics_api_on_loopback  # noqa: E402
from tests.scale_to_zero_harness import (  # noqa: E402
    IDLE_WINDOW,
    NAME,
    STAGES,
    activator_counters,
    activator_process,
    activator_service,
    chute,
    chute_port,
    kube_proxy_sends_to,
    real_node_cluster,
    run,
)

from chute_devcluster.controlplane import ControlPlane  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scale-to-zero-real-node.json"
DATA_PATH_RESULTS = ROOT / "benchmarks" / "results" / "scale-to-zero-data-path-real-node.json"
WARM_UP = 10


def p95(values: list[float]) -> float:
    """Nearest rank: with fewer than 20 runs it is the largest of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def against_target(added: list[float], runs: int, target: float = 1.0) -> dict[str, Any]:
    """Min, median, p95 and max of the added delays, and whether every run has one with p95 under target."""
    return {
        "min": min(added),
        "median": round(statistics.median(added), 3),
        "p95": p95(added),
        "max": max(added),
        "target_p95": target,
        "target_met": len(added) == runs and p95(added) < target,
    }


def stage_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    medians: dict[str, float] = {}
    for name, _ in STAGES:
        seen = [r["stages_s"][name] for r in runs if name in r.get("stages_s", {})]
        if seen:
            medians[name] = round(statistics.median(seen), 3)
    return medians


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "requests": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2),
    }


def timed_requests(address: tuple[str, int], host: str, count: int) -> list[float]:
    """``count`` sequential small completions, a new connection each (so each passes kube-proxy's
    DNAT anew); the seconds each took to its last byte, warm-up excluded. Every one must be 200."""
    body = json.dumps(
        {"model": "chute-modelsim", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    )
    took: list[float] = []
    for index in range(WARM_UP + count):
        started = time.perf_counter()
        connection = http.client.HTTPConnection(*address, timeout=30)
        connection.request(
            "POST", "/v1/chat/completions", body, {"Content-Type": "application/json", "Host": host}
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"{address}: {response.status}")
        if index >= WARM_UP:
            took.append(time.perf_counter() - started)
    return took


def data_path(cp: ControlPlane, work: Path, image: str, requests: int, rounds: int) -> dict[str, Any]:
    """ClusterIP latency with the Chute's replica ready, the activator running vs stopped."""
    namespace = "bench-data-path"
    cp.kubectl("create", "namespace", namespace)
    eventually(lambda: get(cp, "serviceaccount", "default", namespace), what="default ServiceAccount")
    assert cp.real_node_settings is not None
    host, node = cp.real_node_settings.node_ip, cp.real_node_settings.name
    dns = f"{NAME}.{namespace}.svc.cluster.local"
    samples: dict[str, list[float]] = {"running": [], "stopped": [], "through_activator": []}
    counters_moved: list[float] = []
    try:
        with metrics_api_on_loopback(
            cp,
            namespace,
            work,
            CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
            CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
            CHUTE_OPERATOR_SIDECAR_IMAGE=image,
        ):
            activator_service(cp, namespace, host)
            manifest = chute(image, node, 2.0)  # the model answers at once: the time is the path's
            manifest["spec"]["args"].append("--time-to-first-token-seconds=0")
            apply(cp, manifest, namespace)
            eventually(
                lambda: [p for p in items(cp, "pods", namespace, f"chutes.ai/chute={NAME}")
                         if condition(p, "Ready").get("status") == "True"] or None,
                what="the Chute's pod Ready", timeout=300,
            )  # fmt: skip
            eventually(lambda: get(cp, "endpointslice", f"{NAME}-activator", namespace) is None or None,
                       what="the activator slice removed")  # fmt: skip
            port = chute_port(cp, namespace)
            eventually(lambda: not kube_proxy_sends_to(namespace, NAME, f"{host}:{port}") or None,
                       what="kube-proxy's rule to the activator gone", timeout=30)  # fmt: skip
            address = service_address(cp, NAME, namespace)
            for index in range(rounds):
                with activator_process(cp, namespace, work, host) as (_, metrics_port, _):
                    before = activator_counters(metrics_port, host)
                    samples["running"] += timed_requests(address, dns, requests)
                    after = activator_counters(metrics_port, host)
                    counters_moved.append(sum(after.values()) - sum(before.values()))
                    samples["through_activator"] += timed_requests((host, port), dns, requests)
                samples["stopped"] += timed_requests(address, dns, requests)
                print(
                    f"round {index + 1}: " + json.dumps({k: latency(v) for k, v in samples.items()}),
                    flush=True,
                )
    finally:
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    summary = {name: latency(values) for name, values in samples.items()}
    return {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "setup": "real node: the project image's modelsim (no time to first token, no simulated generation) "
        "behind the real sidecar; "
        "operator with its metrics API; the Chute (minInstances 0) with its replica ready, so the operator "
        "has removed its activator EndpointSlice and kube-proxy its rule to the activator; sequential small "
        "completions, a new connection each, to the Chute Service's ClusterIP with the activator process on "
        f"the node's bridge address running and then stopped (SIGTERM), {rounds} rounds of {requests} each "
        f"(after {WARM_UP} warm-up requests); through_activator: the same requests sent to the activator "
        "itself while it runs (it forwards to the ready pod), what a request pays when it does pass it",
        "cluster_ip_activator_running": summary["running"],
        "cluster_ip_activator_stopped": summary["stopped"],
        "through_activator": summary["through_activator"],
        "p50_running_minus_stopped_ms": round(summary["running"]["p50_ms"] - summary["stopped"]["p50_ms"], 2),
        "activator_counters_moved_by_cluster_ip_requests": counters_moved,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=8.0)
    parser.add_argument("--label", default="", help="suffix of the results file (e.g. before)")
    parser.add_argument(
        "--data-path", action="store_true", help="ClusterIP latency at ready, activator on/off"
    )
    parser.add_argument("--requests", type=int, default=200, help="--data-path: requests per round and case")
    parser.add_argument("--rounds", type=int, default=3, help="--data-path: rounds (running, then stopped)")
    args = parser.parse_args()
    if not (1 <= args.runs <= 10 and 0 <= args.load_seconds <= 120):
        parser.error("--runs 1..10, --load-seconds 0..120")
    if not (1 <= args.requests <= 1000 and 1 <= args.rounds <= 10):
        parser.error("--requests 1..1000, --rounds 1..10")
    with real_node_cluster("bench-zero-") as (cp, scratch):
        if args.data_path:
            measured = data_path(cp, scratch, cp.project_image(), args.requests, args.rounds)
        else:
            runs = run(cp, scratch, cp.project_image(), args.runs, args.load_seconds)
    if args.data_path:
        DATA_PATH_RESULTS.write_text(json.dumps(measured, indent=2) + "\n")
        print(json.dumps(measured, indent=2))
        return 0
    added = [r["added_beyond_load_s"] for r in runs if r["status"] == 200]
    beyond_measured = [r["added_beyond_measured_load_s"] for r in runs if "added_beyond_measured_load_s" in r]
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "setup": "real node: the project image's modelsim behind the real sidecar; operator with its metrics "
        "API (scrape 1 s, scale-to-zero check 1 s); a real activator process on the host dialling the pod "
        "IP (it forwards once the pod's sidecar says ready); the model answers with no time to first token "
        "and no simulated generation time; "
        f"shutdownAfterSeconds {IDLE_WINDOW}, model load {args.load_seconds:g} s",
        "runs": runs,
        "answered_200": f"{len(added)}/{len(runs)}",
        "added_beyond_load_s": against_target(added, len(runs)),
        "added_beyond_measured_load_s": {
            "what": "the answer's time beyond the model's load as measured in each run, from its container "
            "running to its /health 200 (the server's process start included, as in status.loadSeconds)",
            **against_target(beyond_measured, len(runs)),
        },
        "stages": {name: what for name, what in STAGES},
        "stage_medians_s": stage_medians(runs),
    }
    path = RESULTS.with_name(f"{RESULTS.stem}-{args.label}.json") if args.label else RESULTS
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
