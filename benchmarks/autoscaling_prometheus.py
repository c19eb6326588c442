"""The documented prometheus-adapter route, on the real node, with the operator's own metrics API off.

    .venv/bin/python benchmarks/autoscaling_prometheus.py [--runs 1] [--add] [--scrape-interval 30s]

What runs: the local cluster with its real node; the operator with ``CHUTE_OPERATOR_METRICS_API``
off; Prometheus (Debian's /usr/bin/prometheus, on 127.0.0.1) scraping the Chute's pods' sidecar
``metrics`` port through a scrape job standing in for the Chute's ServiceMonitor (the
prometheus-operator is not installed here, so neither is its CRD; Debian's Prometheus has no
Kubernetes service discovery, so this script writes the Service's ``metrics`` endpoints into a
file_sd file every second, with the ``namespace``, ``service`` and ``pod`` labels the
prometheus-operator sets, at the ServiceMonitor's default interval, 30 s); prometheus-adapter
v0.12.0 (built from the Go module proxy into ~/.cache/chute-operator/ on the first run, see
``tests/prometheus_adapter.py``) with **the rule copied verbatim from docs/deployment.md**, registered
as the ``custom.metrics.k8s.io`` APIService (v1beta1 and v1beta2) through an ExternalName Service named
127.0.0.1, so the kube-apiserver dials loopback only.

Per run: the same Chute as ``benchmarks/autoscaling.py --real-node`` (concurrency 4, threshold 0.5,
1-3 replicas, shutdownAfterSeconds 60) gets 4 streams held open on its first pod's IP at a random
point of the HPA's 15 s sync; measured: load start to the HPA's decision (desiredReplicas 2) and to
the 2nd replica Ready, load end to 1 replica; replicas sampled every second. The documented check
command (``kubectl get --raw .../v1beta1/namespaces/NS/pods/*/chute_utilization_ratio``) is run
and its answer recorded. Writes benchmarks/results/autoscaling-prometheus-adapter.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.autoscaling_load import FullReplicas, ReplicaSampler, ready_pod_ips  # noqa: E402
from tests.kube_helpers import apply, condition, eventually, get  # noqa: E402
from tests.metrics_api_harness import real_node_chute  # noqa: E402
from tests.operator_fixtures import OperatorProcess, _free_port  # noqa: E402
from tests.prometheus_adapter import (  # noqa: E402
    ADAPTER_VERSION,
    PROMETHEUS,
    VERSIONS,
    Processes,
    available,
    ensure_adapter,
    prometheus_value,
    register_adapter,
    start_adapter,
    start_prometheus,
)

from chute_devcluster.binaries import ensure_binaries  # noqa: E402
from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.realnode import build_node_images  # noqa: E402
from chute_devcluster.realnode_config import RealNodeSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "autoscaling-prometheus-adapter.json"
NAME = "bench"


def documented_rule() -> dict[str, Any]:
    """The prometheus-adapter configuration block of docs/deployment.md, exactly as written there."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    section = doc.split("### With prometheus-adapter instead", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None, "no yaml block in the prometheus-adapter section of docs/deployment.md"
    config: dict[str, Any] = yaml.safe_load(block[1])
    return config


def documented_check(namespace: str) -> str:
    """The check command's path from docs/deployment.md, for this namespace."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    found = re.search(r'kubectl get --raw "(/apis/custom\.metrics\.k8s\.io/[^"]+)"', doc)
    assert found is not None, "no check command in docs/deployment.md"
    return found[1].replace("/NS/", f"/{namespace}/")


def prometheus_config(targets: Path, interval: str) -> dict[str, Any]:
    """One scrape job standing in for the Chute's ServiceMonitor (port ``metrics``, path /metrics).

    Debian's Prometheus is built without the Kubernetes service discovery (``kubernetes_sd_configs``
    is refused: "field kubernetes_sd_configs not found in type config.ScrapeConfig"), so
    :class:`Targets` writes what its ``endpoints`` role would find into a ``file_sd`` file."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": f"serviceMonitor/{NAME}/0",
                "scrape_interval": interval,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "5s"}],
            }
        ],
    }


class Targets:
    """Every second: the Chute's Service's EndpointSlices, port ``metrics``, ready or not (as the
    endpoints role lists them), written as file_sd targets with the labels the prometheus-operator
    gives a ServiceMonitor's targets (namespace, service, pod, endpoint, job)."""

    def __init__(self, cp: ControlPlane, namespace: str, path: Path) -> None:
        self.cp, self.namespace, self.path = cp, namespace, path
        self.path.write_text("[]")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="targets", daemon=True)

    def __enter__(self) -> Targets:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def targets(self) -> list[dict[str, Any]]:
        result = self.cp.kubectl(
            "get", "endpointslices", "-n", self.namespace, "-l", f"kubernetes.io/service-name={NAME}",
            "-o", "json", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return []
        found = []
        for piece in json.loads(result.stdout)["items"]:
            port = next((p["port"] for p in piece.get("ports") or [] if p.get("name") == "metrics"), None)
            for endpoint in piece.get("endpoints") or [] if port else []:
                pod = (endpoint.get("targetRef") or {}).get("name", "")
                labels = {"namespace": self.namespace, "service": NAME, "pod": pod}
                labels |= {"endpoint": "metrics", "job": NAME}
                found += [{"targets": [f"{a}:{port}"], "labels": labels} for a in endpoint["addresses"]]
        return found

    def _run(self) -> None:
        deadline = time.monotonic() + 1800
        while not self._stop.is_set() and time.monotonic() < deadline:
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(self.targets()))
            partial.replace(self.path)  # Prometheus must never read half a file
            self._stop.wait(1.0)


def desired(cp: ControlPlane, namespace: str) -> Any:
    return ((get(cp, "hpa", NAME, namespace) or {}).get("status") or {}).get("desiredReplicas")


def replicas_of(cp: ControlPlane, namespace: str) -> Any:
    return ((get(cp, "deployment", NAME, namespace) or {}).get("spec") or {}).get("replicas")


def one_run(
    cp: ControlPlane, index: int, work: Path, image: str, interval: str, relist: str
) -> dict[str, Any]:
    namespace = f"bench-prom-adapter-{index}"
    cp.kubectl("create", "namespace", namespace)
    eventually(lambda: get(cp, "serviceaccount", "default", namespace), what="default ServiceAccount")
    run_dir = work / namespace
    run_dir.mkdir()
    processes = Processes(run_dir)
    operator = OperatorProcess(
        cp.kubeconfig,
        run_dir,
        f"prom-{namespace}",
        (namespace,),
        CHUTE_OPERATOR_LEASE_NAME=f"prom-{namespace}",
        CHUTE_OPERATOR_METRICS_API="false",
        CHUTE_OPERATOR_SIDECAR_IMAGE=image,
    ).start()
    stack = contextlib.ExitStack()
    try:
        prometheus_port, adapter_port = _free_port(), _free_port()
        targets = stack.enter_context(Targets(cp, namespace, run_dir / "targets.json"))
        start_prometheus(processes, prometheus_config(targets.path, interval), prometheus_port)
        ca_cert = start_adapter(
            processes, cp, namespace, documented_rule(), prometheus_port, adapter_port, relist
        )
        register_adapter(cp, namespace, adapter_port, ca_cert)
        node = cp.real_node_settings.name if cp.real_node_settings else ""
        apply(cp, real_node_chute(NAME, image, node), namespace)
        eventually(lambda: ready_pod_ips(cp, NAME, namespace), what="the Chute's pod Ready", timeout=300)
        for version in VERSIONS:
            eventually(
                lambda v=version: available(cp, processes, f"{v}.custom.metrics.k8s.io"),  # type: ignore[misc]
                what=f"the adapter's APIService {version} Available",
                timeout=120,
            )
        eventually(
            lambda: prometheus_value(prometheus_port, f'chute_utilization_ratio{{namespace="{namespace}"}}'),
            what="Prometheus scraping the sidecar",
            timeout=120,
        )
        check_path = documented_check(namespace)
        checked = eventually(
            lambda: (lambda r: json.loads(r.stdout) if r.returncode == 0 else None)(
                cp.kubectl("get", "--raw", check_path, check=False)
            ),
            what="the documented check command answering",
            timeout=180,
        )
        eventually(
            lambda: condition(get(cp, "hpa", NAME, namespace), "ScalingActive").get("status") == "True",
            what="the HPA reading the metric through prometheus-adapter (ScalingActive)",
            timeout=180,
        )
        time.sleep(random.uniform(0, 15))
        load = FullReplicas(max_pods=1)
        marks: dict[str, float] = {}
        with ReplicaSampler(cp, NAME, namespace, interval=1.0, limit=600) as sampler:
            started = time.monotonic()
            try:
                load.fill(ready_pod_ips(cp, NAME, namespace))
                eventually(lambda: desired(cp, namespace) == 2, what="the HPA wanting 2", timeout=240)
                marks["to_decision_s"] = time.monotonic() - started
                eventually(lambda: len(ready_pod_ips(cp, NAME, namespace)) >= 2, what="2 ready", timeout=300)
                marks["to_second_ready_s"] = time.monotonic() - started
            finally:
                load.close()
            idle = time.monotonic()
            eventually(lambda: replicas_of(cp, namespace) == 1, what="back to 1", timeout=300)
            marks["to_scale_down_s"] = time.monotonic() - idle
        processes.check()
        return {
            **{key: round(value, 1) for key, value in marks.items()},
            "replicas_at_peak": sampler.most("replicas"),
            "documented_check_answer": [
                (item["describedObject"]["name"], item["value"]) for item in checked.get("items", [])
            ],
        }
    finally:
        for version in VERSIONS:
            cp.kubectl(
                "delete", "apiservice", f"{version}.custom.metrics.k8s.io", "--ignore-not-found", check=False
            )
        processes.stop()
        stack.close()
        operator.stop()
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [run[key] for run in runs]
    return {"min": min(values), "median": round(statistics.median(values), 1), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--add", action="store_true", help="add the runs to the results file's (same setup)")
    parser.add_argument("--scrape-interval", default="30s", help="the ServiceMonitor's (default 30s)")
    parser.add_argument(
        "--relist-interval", default="30s", help="prometheus-adapter --metrics-relist-interval"
    )
    args = parser.parse_args()
    if not PROMETHEUS.exists():
        print(f"missing {PROMETHEUS}: apt-get install prometheus", file=sys.stderr)
        return 2
    ensure_adapter()
    tools = ensure_binaries()
    images = build_node_images()
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-prom-adapter-") as scratch,
        ControlPlane(
            tools=tools,
            real_node=RealNodeSettings.from_env(),
            real_node_images=images,
            startup_timeout=600,
            real_node_lock_timeout=900,
        ) as cp,
    ):
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        image = cp.project_image()
        for index in range(args.runs):
            runs.append(one_run(cp, index, Path(scratch), image, args.scrape_interval, args.relist_interval))
            print(f"run {index + 1}: {runs[-1]}", flush=True)
    version = subprocess.run([str(PROMETHEUS), "--version"], capture_output=True, text=True).stdout
    setup = (
        f"real node: real pods (project image: modelsim behind the sidecar); operator with its metrics "
        f"API off; Prometheus {version.split()[2]} (Debian) scraping the sidecars' metrics port every "
        f"{args.scrape_interval} (file_sd targets from the Service's EndpointSlices, labelled as a "
        "ServiceMonitor's); prometheus-adapter "
        f"{ADAPTER_VERSION} (--metrics-relist-interval={args.relist_interval}) with the rule of "
        "docs/deployment.md; real kube-apiserver aggregation and HPA controller (15 s sync); "
        "concurrency 4, threshold 0.5, maxInstances 3, shutdownAfterSeconds 60, 4 streams"
    )
    if args.add and RESULTS.exists():
        earlier = json.loads(RESULTS.read_text())
        if earlier.get("setup") == setup and earlier.get("adapter_rule") == documented_rule():
            runs = earlier["runs"] + runs
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "setup": setup,
        "adapter_rule": documented_rule(),
        "runs": runs,
        "load_start_to_hpa_decision_s": summary(runs, "to_decision_s"),
        "load_start_to_second_replica_ready_s": summary(runs, "to_second_ready_s"),
        "load_end_to_scale_down_s (shutdownAfterSeconds 60)": summary(runs, "to_scale_down_s"),
        "most_replicas (maxInstances 3)": max(run["replicas_at_peak"] for run in runs),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
