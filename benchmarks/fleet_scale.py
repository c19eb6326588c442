"""Thousands of Chutes with ``minInstances: 0``, most of them asleep: one operator replica, kwok pods.

    .venv/bin/python benchmarks/fleet_scale.py [--chutes 5000] [--awake-percent 10] [--wakes 20]

On the local control plane (kwok nodes; the ServiceMonitor CRD installed), the operator with its
metrics API (as ``tests/metrics_api_harness.py`` runs it) and scale to zero on (the activator's
Service and a ready placeholder endpoint, as ``tests/scale_to_zero_harness.py`` gives it), and a real
activator process watching the namespace. Every Chute has ``minInstances: 0``, ``maxInstances: 2``
and ``shutdownAfterSeconds: 60``. SIMULATION: kwok pods have no sidecar; the test-only address map
sends each pod to a loopback address of ``benchmarks/stats_farm.py``, whose first ``--awake-percent``
addresses report a request in flight (those Chutes stay up) and the rest ``idle_secs`` 100000 (the
operator sends them to zero through its real path: scraper reading, confirming read, apply).

Measured: the time to that state; the operator's RSS and process CPU (``/proc``: CPU time, not wall)
over a quiet window; the objects each Chute keeps, asleep and awake, in etcd bytes (values read from
etcd's own range API) and the API server's watch events by kind over the window; the activator's
RSS; a cold restart (time to reconcile every Chute, writes, RSS); and ``--wakes`` wakes of Chutes
picked at random, one at a time, each as the activator asks (the ``chutes.ai/wake-requested-at``
annotation), timed to the Deployment scaled, its pod Ready (kwok: no model, no container) and the
activator's EndpointSlice deleted. No request is sent to the activator: it would dial the kwok pod's
address, which no host owns. Every loop is bounded by ``--timeout``. Writes
benchmarks/results/fleet-<N>.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import random
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.operator_scale import _label, _proc  # noqa: E402
from tests.metrics_api_harness import metrics_api_on_loopback  # noqa: E402
from tests.operator_fixtures import OperatorProcess  # noqa: E402
from tests.scale_to_zero_harness import activator_process, activator_service  # noqa: E402

from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.nodes import NodePool  # noqa: E402
from chute_shared.cluster import CHUTE_LABEL, WAKE_ANNOTATION  # noqa: E402

NAMESPACE = "fleet"
SERVICEMONITOR_CRD = ROOT / "tests" / "fixtures" / "servicemonitor-crd.yaml"
WINDOW = 60.0
"""The quiet window over which CPU and watch traffic are read."""
KINDS = {
    "chutes": "/registry/chutes.ai/chutes/",
    "deployments": "/registry/deployments/",
    "replicasets": "/registry/replicasets/",
    "pods": "/registry/pods/",
    "services": "/registry/services/specs/",
    "endpointslices": "/registry/endpointslices/",
    "horizontalpodautoscalers": "/registry/horizontalpodautoscalers/",
    "networkpolicies": "/registry/networkpolicies/",
    "servicemonitors": "/registry/monitoring.coreos.com/servicemonitors/",
    "events": "/registry/events/",
}


RESTART_POLL_SECONDS = 2.0
"""How often the restarted operator's /metrics is read to see it has reconciled every Chute. Each read
walks every Chute's readiness series: read every 0.5 s, that was 11% of the restarted operator's CPU
at 5000 (fleet-5000-restart-profile.txt.gz), where Prometheus reads it every 15 to 30 s."""


def name(index: int) -> str:
    return f"fleet-{index:05d}"


def chute(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name(index), "namespace": NAMESPACE},
        "spec": {
            "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
            "template": "tei",
            "model": {"name": "sentence-transformers/all-MiniLM-L6-v2"},
            "nodeSelector": {"gpuCount": 0},
            "minInstances": 0,
            "maxInstances": 2,
            "shutdownAfterSeconds": 60,
        },
    }


def _items(cp: ControlPlane, path: str) -> list[dict[str, Any]]:
    """A listing from the API server's watch cache (``resourceVersion=0``)."""
    found: list[dict[str, Any]] = cp.api.get(f"{path}?resourceVersion=0", timeout=120).get("items") or []
    return found


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _state(cp: ControlPlane, awake: int) -> dict[str, int]:
    """How many sleepers are at zero and how many awake Chutes have a ready pod."""
    deployments = _items(cp, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")
    pods = _items(cp, f"/api/v1/namespaces/{NAMESPACE}/pods")
    at_zero = sum(
        1
        for d in deployments
        if (d["spec"].get("replicas") == 0) and int(d["metadata"]["name"].rsplit("-", 1)[1]) >= awake
    )
    ready = {(p["metadata"].get("labels") or {}).get(CHUTE_LABEL) for p in pods if _ready(p)}
    return {
        "deployments": len(deployments),
        "pods": len(pods),
        "sleepers_at_zero": at_zero,
        "awake_ready": sum(1 for i in range(awake) if name(i) in ready),
    }


class AddressMap:
    """Keeps the test-only address map: each pod of Chute i -> the farm's address i (bounded thread)."""

    def __init__(self, cp: ControlPlane, path: Path, addresses: list[str], limit: float) -> None:
        self.cp, self.path, self.addresses, self.limit = cp, path, addresses, limit
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - started < self.limit:
            with contextlib.suppress(Exception):
                self.write()
            self.stop.wait(3)

    def write(self) -> None:
        mapping = {}
        for pod in _items(self.cp, f"/api/v1/namespaces/{NAMESPACE}/pods"):
            chute_name = (pod["metadata"].get("labels") or {}).get(CHUTE_LABEL, "")
            if chute_name.startswith("fleet-"):
                index = int(chute_name.rsplit("-", 1)[1])
                mapping[f"{NAMESPACE}/{pod['metadata']['name']}"] = self.addresses[index]
        text = json.dumps(mapping, sort_keys=True)
        if not self.path.exists() or self.path.read_text() != text:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.path)


def etcd_sizes(port: int, prefix: str, awake: int) -> dict[str, Any]:
    """Keys and value bytes under ``prefix`` in the namespace, split by the Chute they belong to
    (awake: index below ``awake``; asleep; other: no Chute's name)."""
    split: dict[str, dict[str, int]] = {g: {"objects": 0, "bytes": 0} for g in ("awake", "asleep", "other")}
    key = (prefix + NAMESPACE + "/").encode()
    end = key[:-1] + bytes([key[-1] + 1])
    start = key
    for _ in range(1000):  # bounded: pages of 1000 keys
        body = json.dumps(
            {
                "key": base64.b64encode(start).decode(),
                "range_end": base64.b64encode(end).decode(),
                "limit": 1000,
            }
        ).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v3/kv/range", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:  # nosec B310  # loopback etcd
            page = json.loads(response.read())
        kvs = page.get("kvs") or []
        for kv in kvs:
            k = base64.b64decode(kv["key"]).decode(errors="replace")
            rest = k[len(key) :]
            group = "other"
            if rest.startswith("fleet-") and rest[6:11].isdigit():
                group = "awake" if int(rest[6:11]) < awake else "asleep"
            split[group]["objects"] += 1
            split[group]["bytes"] += len(base64.b64decode(kv.get("value", "")))
        if not page.get("more") or not kvs:
            break
        start = base64.b64decode(kvs[-1]["key"]) + b"\x00"
    return split


def etcd_metric(port: int, metric: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:  # nosec B310
        for line in response.read().decode().splitlines():
            if line.startswith(metric + " "):
                return float(line.split()[1])
    return 0.0


def watch_events(cp: ControlPlane) -> dict[str, dict[str, float]]:
    """The API server's watch events sent so far, count and bytes, by kind (all watchers)."""
    found: dict[str, dict[str, float]] = {}
    for line in cp.api.get("/metrics", timeout=60).get("text", "").splitlines():
        for metric, field in (
            ("apiserver_watch_events_total{", "events"),
            ("apiserver_watch_events_sizes_sum{", "bytes"),
        ):
            if line.startswith(metric):
                labels, _, value = line.rpartition(" ")
                kind = _label(labels, "kind") or _label(labels, "resource")
                found.setdefault(kind, {"events": 0.0, "bytes": 0.0})[field] += float(value)
    return found


def _grown(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, int]]:
    out = {}
    for kind, now in after.items():
        was = before.get(kind, {"events": 0.0, "bytes": 0.0})
        delta = {k: int(now[k] - was[k]) for k in now}
        if any(delta.values()):
            out[kind] = delta
    return dict(sorted(out.items()))


def quiet(operator: OperatorProcess, still: float, limit: float) -> float:
    """Seconds until the operator wrote nothing for ``still`` seconds (at most ``limit``)."""
    started = time.monotonic()
    last, since = operator.metric("chute_operator_api_writes_total"), time.monotonic()
    while time.monotonic() - since < still and time.monotonic() - started < limit:
        time.sleep(1)
        now = operator.metric("chute_operator_api_writes_total")
        if now != last:
            last, since = now, time.monotonic()
    return round(time.monotonic() - started - still, 1)


def window(cp: ControlPlane, operator: OperatorProcess) -> dict[str, Any]:
    """The operator's CPU, writes and reads of sidecars, and the watch events, over WINDOW seconds."""
    pid = _pid(operator)
    before, watched = _proc(pid), watch_events(cp)
    writes = operator.metric("chute_operator_api_writes_total")
    reads = operator.metric("chute_operator_metrics_api_sidecar_reads_total")
    started = time.monotonic()
    time.sleep(WINDOW)
    after, seconds = _proc(pid), time.monotonic() - started
    return {
        "seconds": round(seconds, 1),
        "operator_cpu_seconds": round(after["cpu_seconds"] - before["cpu_seconds"], 2),
        "operator_core_fraction": round((after["cpu_seconds"] - before["cpu_seconds"]) / seconds, 4),
        "operator_rss_mb": round(after["rss_mb"], 1),
        "operator_writes": operator.metric("chute_operator_api_writes_total") - writes,
        "sidecar_reads": operator.metric("chute_operator_metrics_api_sidecar_reads_total") - reads,
        "watch_events_by_kind": _grown(watched, watch_events(cp)),
    }


def chute_statuses(cp: ControlPlane) -> dict[str, Any]:
    return {
        c["metadata"]["name"]: c.get("status")
        for c in _items(cp, f"/apis/chutes.ai/v1alpha1/namespaces/{NAMESPACE}/chutes")
    }


def status_changes(before: dict[str, Any], after: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """The first ``limit`` Chutes whose status differs, each with its conditions before and after."""
    changed = [name for name in sorted(after) if before.get(name) != after[name]]
    return [{"chute": name, "before": before.get(name), "after": after[name]} for name in changed[:limit]]


def writes_by_kind(operator: OperatorProcess) -> dict[str, float]:
    kinds = ("Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor",
             "EndpointSlice", "Chute/status", "Event")  # fmt: skip
    return {kind: operator.metric("chute_operator_api_writes_total", kind=kind) for kind in kinds}


def events(cp: ControlPlane) -> dict[str, int]:
    """The namespace's Events by who reported them and why (they expire after an hour)."""
    counts: dict[str, int] = {}
    for event in _items(cp, f"/api/v1/namespaces/{NAMESPACE}/events"):
        source = event.get("reportingComponent") or (event.get("source") or {}).get("component") or "?"
        key = f"{source} {event.get('reason')}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _patch(cp: ControlPlane, path: str, patch: dict[str, Any]) -> None:
    """A merge patch through the API server (what the activator's wake write is)."""
    context: ssl.SSLContext = cp.api._context  # the control plane's admin client
    request = urllib.request.Request(
        cp.api.server + path, data=json.dumps(patch).encode(), method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # nosec B310  # loopback
        response.read()


def wake(cp: ControlPlane, index: int, limit: float) -> dict[str, Any]:
    """Ask for one wake as the activator does; time the operator's and the cluster's parts."""
    chute_name = name(index)
    base = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{chute_name}"
    slice_path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{chute_name}-activator"
    pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={CHUTE_LABEL}%3D{chute_name}"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    started = time.monotonic()
    _patch(cp, f"/apis/chutes.ai/v1alpha1/namespaces/{NAMESPACE}/chutes/{chute_name}",
           {"metadata": {"annotations": {WAKE_ANNOTATION: now}}})  # fmt: skip
    seen: dict[str, Any] = {"annotation_written": round(time.monotonic() - started, 3)}
    while time.monotonic() - started < limit and "activator_slice_deleted" not in seen:
        now_s = round(time.monotonic() - started, 3)
        if "deployment_scaled" not in seen and (cp.api.get(base).get("spec") or {}).get("replicas", 0) >= 1:
            seen["deployment_scaled"] = now_s
        pods = [] if "pod_ready" in seen else cp.api.get(pods_path).get("items") or []
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if live and "pod_created" not in seen:
            seen["pod_created"] = now_s
            seen["pod"] = live[0]["metadata"]["name"]
        if any(_ready(p) for p in live):
            seen["pod_ready"] = now_s
        if "pod_ready" in seen:
            try:
                cp.api.get(slice_path)
            except Exception as error:  # 404: deleted
                if "404" in str(error):
                    seen["activator_slice_deleted"] = now_s
        time.sleep(0.05)
    return {"chute": chute_name, **seen}


def _pid(operator: OperatorProcess) -> int:
    if operator.process is None:
        raise RuntimeError("the operator is not running")
    return operator.process.pid


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))]


def run(args: argparse.Namespace, results: dict[str, Any]) -> None:
    awake = args.chutes * args.awake_percent // 100
    results["awake_chutes"] = awake
    pools = [NodePool("cpu", max(2, args.chutes // 1000 + 1), "bench.cpu", "4096", "64Ti", "64Ti",
                      pods=args.chutes // max(2, args.chutes // 1000 + 1) + 200)]  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="fleet-") as tmp,
        ControlPlane(node_pools=pools, kwok_log_level="WARN") as cp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("apply", "--server-side", "-f", str(SERVICEMONITOR_CRD))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        cp.kubectl("create", "namespace", NAMESPACE)
        ready_file = work / "farm.json"
        farm = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "stats_farm.py"), f"--addresses={args.chutes}",
             f"--busy={awake}", f"--ready-file={ready_file}", f"--seconds={args.timeout * 3}"]
        )  # fmt: skip
        stack.callback(farm.terminate)
        deadline = time.monotonic() + 120
        while not (ready_file.exists() and ready_file.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.5)
        listed = json.loads(ready_file.read_text())
        addresses = [f"{a}:{listed['port']}" for a in listed["addresses"]]
        activators: list[subprocess.Popen[bytes]] = []
        stack.enter_context(activator_process(cp, NAMESPACE, work, processes=activators))
        operator, map_path = stack.enter_context(
            metrics_api_on_loopback(
                cp, NAMESPACE, work, scrape_interval=2,
                CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{NAMESPACE}/activator",
                CHUTE_OPERATOR_LOG_LEVEL="WARNING",
            )
        )  # fmt: skip
        activator_service(cp, NAMESPACE)
        results["operator_idle_rss_mb"] = round(_proc(_pid(operator))["rss_mb"], 1)
        mapper = AddressMap(cp, map_path, addresses, args.timeout)
        mapper.thread.start()
        started = time.monotonic()
        documents = "\n---\n".join(json.dumps(chute(i)) for i in range(args.chutes))
        cp.kubectl(
            "apply", "--server-side", "--field-manager=bench", "-f", "-", input=documents, timeout=1200
        )
        results["seconds_to_apply"] = round(time.monotonic() - started, 1)
        timeline: list[dict[str, float]] = []
        results["timeline"] = timeline  # kept in the results file if the run stops early
        while True:
            state: dict[str, float] = dict(_state(cp, awake))
            state["t"] = round(time.monotonic() - started)
            state["operator_rss_mb"] = round(_proc(_pid(operator))["rss_mb"], 1)
            timeline.append(state)
            print(json.dumps(state), flush=True)
            if state["sleepers_at_zero"] == args.chutes - awake and state["awake_ready"] == awake:
                break
            if time.monotonic() - started > args.timeout:
                results["timeline"] = timeline
                raise SystemExit(f"not settled within {args.timeout}s: {state}")
            time.sleep(10)
        results["seconds_to_settled"] = round(time.monotonic() - started, 1)
        results["timeline"] = timeline
        results["settled_to_quiet_seconds"] = quiet(operator, 16, 600)
        results["operator_peak_rss_mb"] = round(_proc(_pid(operator))["peak_rss_mb"], 1)
        results["writes_to_quiet_per_chute"] = round(
            operator.metric("chute_operator_api_writes_total") / args.chutes, 2
        )
        results["writes_to_quiet_by_kind"] = writes_by_kind(operator)
        results["reconciles_to_quiet"] = operator.metric("chute_operator_reconciles_total")
        results["steady"] = window(cp, operator)
        results["events_by_source_and_reason"] = events(cp)
        results["etcd"] = {kind: etcd_sizes(cp.etcd_port, prefix, awake) for kind, prefix in KINDS.items()}
        results["etcd_db_size_in_use_bytes"] = etcd_metric(
            cp.etcd_port, "etcd_mvcc_db_total_size_in_use_in_bytes"
        )
        results["activator_rss_mb"] = round(_proc(activators[0].pid)["rss_mb"], 1)
        results["activator_peak_rss_mb"] = round(_proc(activators[0].pid)["peak_rss_mb"], 1)
        statuses = chute_statuses(cp)
        operator.stop()
        restart_wall = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        restarted = time.monotonic()
        operator.start()
        while operator.metric("chute_operator_reconciles_total", result="success") < args.chutes:
            if time.monotonic() - restarted > args.timeout:
                raise SystemExit("the restarted operator did not reconcile every Chute")
            time.sleep(RESTART_POLL_SECONDS)
        results["restart_seconds_to_reconcile_all"] = round(time.monotonic() - restarted, 1)
        time.sleep(20)
        results["restart_writes_20s_after_all"] = operator.metric("chute_operator_api_writes_total")
        results["restart_writes_by_kind"] = writes_by_kind(operator)
        results["restart_status_changes"] = status_changes(statuses, chute_statuses(cp))
        results["restart_events"] = [
            f"{e.get('involvedObject', {}).get('name')} {e.get('reason')}: {e.get('message')}"[:300]
            for e in _items(cp, f"/api/v1/namespaces/{NAMESPACE}/events")
            if (e.get("reportingComponent") or (e.get("source") or {}).get("component")) == "chute-operator"
            and max(str(e.get("lastTimestamp") or ""), str(e.get("eventTime") or "")) >= restart_wall
        ][:20]
        results["restart_rss_mb"] = round(_proc(_pid(operator))["rss_mb"], 1)
        results["restart_peak_rss_mb"] = round(_proc(_pid(operator))["peak_rss_mb"], 1)
        results["restart_steady"] = window(cp, operator)
        mapper.stop.set()  # woken pods stay unmapped: never read, so never put back to sleep
        picks = random.Random(30).sample(range(awake, args.chutes), min(args.wakes, args.chutes - awake))  # nosec B311
        wakes = [wake(cp, i, 60) for i in picks]
        for entry in wakes:
            print(json.dumps(entry), flush=True)
        results["wakes"] = wakes
        for stage in ("deployment_scaled", "pod_created", "pod_ready", "activator_slice_deleted"):
            values = [w[stage] for w in wakes if stage in w]
            results[f"wake_{stage}_p50_s"] = percentile(values, 0.5)
            results[f"wake_{stage}_p95_s"] = percentile(values, 0.95)
            results[f"wake_{stage}_count"] = len(values)
        results["operator_rss_mb_at_end"] = round(_proc(_pid(operator))["rss_mb"], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chutes", type=int, default=5000)
    parser.add_argument("--awake-percent", type=int, default=10)
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=2400, help="bound of each waiting phase (s)")
    parser.add_argument("--results", help="results file name (default fleet-<N>.json)")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "chutes": args.chutes,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB",
        "cpu": "process CPU time (user + system) from /proc/PID/stat, not wall time",
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    out = ROOT / "benchmarks" / "results" / (args.results or f"fleet-{args.chutes}.json")
    try:
        run(args, results)
    finally:
        results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
        out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
