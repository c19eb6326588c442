"""Operator at scale on the local control plane: N Chutes to Ready, memory, writes, restart cost,
against the API server's floor.

The floor, in the same run on the same control plane before the operator starts: the same Chutes
rendered offline by the project's render function and their children applied with one server-side
`kubectl apply`, timed to every Deployment available. ``floor_to_operator_ratio`` is the floor's
time over the operator's (1.0: the operator as fast as the API server allows). For both phases,
``floor_usage`` and ``operator_usage``: how busy the machine's CPUs were, the CPU seconds of each
control plane process, and the API server's requests by verb and by verb and resource (its
``apiserver_request_total``, all clients: the controllers and kwok as well as the floor's kubectl or
the operator). The processes are found by name, so a second control plane running on the machine at
the same time would be counted too: run it on a quiet machine.

The operator's phase starts with the Chutes applied as the floor applies their children: one
``kubectl apply --server-side`` (as Flux, or Argo CD with server-side apply, would). A client-side
``kubectl apply`` would add a GET of each Chute and its last-applied annotation to that phase only
(``--client-side-chutes`` applies them that way, as the runs before 2026-12-04 17:00 UTC did).

``--ceiling`` adds a phase between the two: the least any operator of Chutes adds to the floor. The
same Chutes applied as the operator's phase applies them; meanwhile, in this process and through the
operator's own client (16 calls at a time), each Chute's children, with owner references to it,
applied as soon as a watch shows the Chute, and one status patch as soon as a poll (the floor's)
shows its Deployment available. No reconcile, no GET, no Event, no watch but the Chutes', one small
status where the operator writes one per transition. ``floor_to_ceiling_ratio`` is what an operator
doing only that reaches: an achieved level, not a proven bound. Every phase starts once the control plane
is quiet (the previous phase's namespace collected). ``benchmark_cpu_seconds`` in each phase's usage
is this process's CPU and its kubectl's (the ceiling's least operator runs here).

``--apiserver-profile`` also records where the API server's CPU goes in each phase: a CPU profile of
kube-apiserver (Go's pprof, its ``/debug/pprof/profile``) through the phase, saved beside the results
file as ``<results>-apiserver-<phase>.pprof``, and its seconds per kind of work
(``benchmarks/apiserver_profile.py``) as ``<phase>_apiserver_cpu`` in the results.

Run: .venv/bin/python benchmarks/operator_scale.py [--chutes 200]
Writes benchmarks/results/operator.json (operator-<N>.json for other sizes) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from apiserver_profile import go_tool, shares  # noqa: E402
from lightkube import AsyncClient, KubeConfig  # noqa: E402
from lightkube.generic_resource import create_namespaced_resource  # noqa: E402
from tests.operator_fixtures import OperatorProcess  # noqa: E402

from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.nodes import NodePool  # noqa: E402
from chute_operator.gpus import builtin_catalog  # noqa: E402
from chute_operator.kube import KubeApi  # noqa: E402
from chute_operator.render import render  # noqa: E402
from chute_operator.validation import parse_chute  # noqa: E402
from chute_operator.workload import RenderOptions  # noqa: E402

NAMESPACE = "bench"
FLOOR_NAMESPACE = "floor"
CEILING_NAMESPACE = "ceiling"
PROFILE_SLICE_SECONDS = 5
PROFILE_MAX_SLICES = 200
CEILING_CONCURRENCY = 16
ChuteResource = create_namespaced_resource("chutes.ai", "v1alpha1", "Chute", "chutes")
READY_STATUS = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": kind,
            "status": "True" if kind != "Degraded" else "False",
            "reason": "Ready",
            "message": "every replica is ready",
            "lastTransitionTime": "2026-12-07T10:00:00Z",
        }
        for kind in ("Ready", "Available", "Progressing", "Degraded")
    ],
}
"""The status the ceiling phase writes once per Chute (the operator's has more conditions)."""
RENDER_OPTIONS = RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test")
WRITE_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "Chute/status", "Event")
SPEC_CHANGES = 50  # Chutes patched one at a time for the spec -> Deployment latency
SPEC_CHANGE_LIMIT = 10.0
QUIET_SECONDS = 16.0
"""Before the restart, the operator must have written nothing for this long (an HPA syncs every 15 s)."""


def _chute(index: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": f"bench-{index:04d}", "namespace": namespace},
        "spec": {
            "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
            "template": "tei",
            "model": {"name": "sentence-transformers/all-MiniLM-L6-v2"},
            "nodeSelector": {"gpuCount": 0},
            "minInstances": 1,
            "maxInstances": 1 + index % 2,
        },
    }


def _proc(pid: int) -> dict[str, float]:
    """RSS, peak RSS (MB) and CPU seconds of a process, from /proc."""
    kib = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            kib[name] = int(value.split()[0])
    _, cpu_seconds = _stat(Path(f"/proc/{pid}/stat").read_text())
    return {"rss_mb": kib["VmRSS"] / 1024, "peak_rss_mb": kib["VmHWM"] / 1024, "cpu_seconds": cpu_seconds}


def _stat(text: str) -> tuple[str, float]:
    """A process's name and CPU seconds (user + system) from its /proc/PID/stat."""
    comm, rest = text.rsplit(")", 1)
    fields = rest.split()
    return comm.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller", "kube-scheduler", "kwok")
"""Process names (as /proc/PID/comm shows them, at most 15 characters) whose CPU each phase records."""


def process_cpu(names: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds so far of the processes of each name (all of a name together; found by name, so
    run on a quiet machine)."""
    cpu = dict.fromkeys(names, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, seconds = _stat(stat.read_text())
        except OSError:
            continue
        if name in cpu:
            cpu[name] += seconds
    return cpu


def _usage(cp: ControlPlane) -> dict[str, Any]:
    """The machine's busy and total CPU seconds, each control plane process's CPU seconds and the API
    server's request counts by verb, now (the difference of two is a phase's)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    usage: dict[str, Any] = {"busy": (sum(fields) - idle) / ticks, "total": sum(fields) / ticks}
    usage["cpu"] = process_cpu(CONTROL_PLANE)
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    usage["benchmark"] = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    verbs: dict[str, float] = {}
    resources: dict[str, float] = {}
    for line in cp.api.get("/metrics", timeout=30).get("text", "").splitlines():
        if line.startswith("apiserver_request_total{"):
            labels, _, value = line.rpartition(" ")
            verb = _label(labels, "verb")
            target = f"{verb} {_label(labels, 'resource')}" + (
                f"/{_label(labels, 'subresource')}" if _label(labels, "subresource") else ""
            )
            verbs[verb] = verbs.get(verb, 0.0) + float(value)
            resources[target] = resources.get(target, 0.0) + float(value)
    usage["requests"] = verbs
    usage["requests_by_resource"] = resources
    return usage


def _label(labels: str, name: str) -> str:
    """A label's value in a Prometheus sample's ``{name="value",...}``."""
    found = labels.split(f'{name}="', 1)
    return found[1].split('"', 1)[0] if len(found) == 2 else ""


def _phase(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the machine and the control plane spent between two :func:`_usage` readings."""
    total = after["total"] - before["total"]
    return {
        "machine_cpu_busy_fraction": round((after["busy"] - before["busy"]) / total, 2) if total else None,
        "cpu_seconds": {name: round(after["cpu"][name] - before["cpu"][name], 1) for name in CONTROL_PLANE},
        "benchmark_cpu_seconds": round(after["benchmark"] - before["benchmark"], 1),
        "api_requests_by_verb": _grown(before["requests"], after["requests"]),
        "api_requests_by_verb_and_resource": _grown(
            before["requests_by_resource"], after["requests_by_resource"]
        ),
    }


def _grown(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """The counters that grew, by how much."""
    return {
        key: int(count - before.get(key, 0.0))
        for key, count in sorted(after.items())
        if count > before.get(key, 0.0)
    }


def _items(cp: ControlPlane, path: str) -> list[dict[str, Any]]:
    """A listing through the API client, from the API server's watch cache (``resourceVersion=0``):
    a ``kubectl get -o json`` of 1000 objects, read from etcd, took seconds of the machine's CPU per
    poll, from the very phases being timed."""
    items: list[dict[str, Any]] = cp.api.get(f"{path}?resourceVersion=0", timeout=60).get("items") or []
    return items


def _ready_count(cp: ControlPlane) -> int:
    items = _items(cp, f"/apis/chutes.ai/v1alpha1/namespaces/{NAMESPACE}/chutes")
    return sum(
        1
        for item in items
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (item.get("status") or {}).get("conditions") or []
        )
    )


def _chute_events(cp: ControlPlane) -> dict[str, int]:
    """The Events on the Chutes so far, counted by type and reason ("Normal Ready")."""
    counts: dict[str, int] = {}
    for event in _items(cp, f"/api/v1/namespaces/{NAMESPACE}/events"):
        if (event.get("involvedObject") or {}).get("kind") == "Chute":
            key = f"{event.get('type')} {event.get('reason')}"
            counts[key] = counts.get(key, 0) + int(event.get("count") or 1)
    return dict(sorted(counts.items()))


def _available_deployments(cp: ControlPlane, namespace: str) -> int:
    return len(_available_names(cp, namespace))


def _available_names(cp: ControlPlane, namespace: str) -> list[str]:
    """The Deployments of the namespace that are available (named as their Chutes)."""
    return [
        item["metadata"]["name"]
        for item in _items(cp, f"/apis/apps/v1/namespaces/{namespace}/deployments")
        if (item.get("status") or {}).get("availableReplicas", 0) >= (item["spec"].get("replicas") or 1)
    ]


class ApiServerProfile:
    """A CPU profile of kube-apiserver from now until :meth:`done`, taken in the background in slices
    of PROFILE_SLICE_SECONDS (the last one ends at most that long after the phase), merged."""

    def __init__(self, cp: ControlPlane, path: Path) -> None:
        self.path = path
        self._kubectl = [str(cp.tools.kubectl), f"--kubeconfig={cp.kubeconfig}", "get", "--raw"]
        self._slices: list[Path] = []
        self._error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._take, daemon=True)
        self._thread.start()
        PROFILES.append(self)

    def _take(self) -> None:
        query = f"/debug/pprof/profile?seconds={PROFILE_SLICE_SECONDS}"
        while not self._stop.is_set() and len(self._slices) < PROFILE_MAX_SLICES:
            piece = self.path.with_suffix(f".{len(self._slices)}.pprof")
            try:
                with piece.open("wb") as out:
                    timeout = PROFILE_SLICE_SECONDS + 60
                    subprocess.run([*self._kubectl, query], stdout=out, timeout=timeout, check=True)
            except (OSError, subprocess.SubprocessError) as error:
                self._error = f"slice {len(self._slices)}: {error}"
                piece.unlink(missing_ok=True)
                return
            self._slices.append(piece)

    def abandon(self) -> None:
        """Stop after the current slice and delete the slices."""
        self._stop.set()
        self._thread.join(timeout=PROFILE_SLICE_SECONDS + 65)
        for piece in self._slices:
            piece.unlink(missing_ok=True)

    def done(self) -> dict[str, Any]:
        """Stop after the current slice; merge the slices into ``path``; the seconds of its CPU per
        kind of work (apiserver_profile.shares) and what the profile covers."""
        self._stop.set()
        self._thread.join()
        covered = {
            "profile": self.path.name,
            "slices": len(self._slices),
            "seconds_profiled": len(self._slices) * PROFILE_SLICE_SECONDS,
            "stopped_early": self._error
            or ("PROFILE_MAX_SLICES reached" if len(self._slices) >= PROFILE_MAX_SLICES else ""),
        }
        if not self._slices:
            return {**covered, "profile": None}
        with self.path.open("wb") as out:
            merge = [go_tool(), "tool", "pprof", "-proto", *map(str, self._slices)]
            subprocess.run(merge, stdout=out, stderr=subprocess.DEVNULL, check=True)
        self.abandon()
        return {**covered, **shares(self.path)}


PROFILES: list[ApiServerProfile] = []
"""Every profile started, so that a run that fails leaves no slices behind."""


def _profile(cp: ControlPlane, args: argparse.Namespace, phase: str) -> ApiServerProfile | None:
    if not args.apiserver_profile:
        return None
    stem = Path(_results_name(args)).stem
    return ApiServerProfile(cp, RESULTS / f"{stem}-apiserver-{phase}.pprof")


def _results_name(args: argparse.Namespace) -> str:
    return str(args.results or ("operator.json" if args.chutes == 200 else f"operator-{args.chutes}.json"))


def _children(chute: dict[str, Any]) -> list[dict[str, Any]]:
    """A Chute's children as the operator renders them (with owner references once it has a uid),
    but the ServiceMonitor: its API is not installed here (the operator skips it too)."""
    return [m for m in render(parse_chute(chute), RENDER_OPTIONS) if m["kind"] != "ServiceMonitor"]


def _floor(cp: ControlPlane, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The API server's floor: the rendered children applied in one server-side apply, to all available."""
    manifests = [manifest for i in range(args.chutes) for manifest in _children(_chute(i, FLOOR_NAMESPACE))]
    cp.kubectl("create", "namespace", FLOOR_NAMESPACE)
    results["floor_settle"] = _settle(cp)
    usage = _usage(cp)
    profile = _profile(cp, args, "floor")
    started = time.monotonic()
    cp.kubectl(
        "apply", "--server-side", "--field-manager=floor", "-f", "-",
        input="\n---\n".join(json.dumps(m) for m in manifests), timeout=args.timeout,
    )  # fmt: skip
    results["floor_seconds_to_apply"] = round(time.monotonic() - started, 1)
    while _available_deployments(cp, FLOOR_NAMESPACE) < args.chutes:
        if time.monotonic() - started > args.timeout:
            raise SystemExit(f"floor: only {_available_deployments(cp, FLOOR_NAMESPACE)} available")
        time.sleep(1)
    results["floor_seconds_to_all_available"] = round(time.monotonic() - started, 1)
    results["floor_usage"] = _phase(usage, _usage(cp))
    results["floor_objects_applied"] = len(manifests)
    if profile is not None:
        results["floor_apiserver_cpu"] = profile.done()
    cp.kubectl("delete", "namespace", FLOOR_NAMESPACE, "--wait=true", timeout=args.timeout)


def _ceiling(cp: ControlPlane, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The least any operator adds to the floor (see the module's docstring)."""
    cp.kubectl("create", "namespace", CEILING_NAMESPACE)
    results["ceiling_settle"] = _settle(cp)
    usage = _usage(cp)
    profile = _profile(cp, args, "ceiling")
    started = time.monotonic()
    steps = asyncio.run(_least_operator(cp, args, started))
    results["ceiling_seconds_to_all_ready"] = round(time.monotonic() - started, 1)
    results["ceiling_steps_seconds"] = steps
    results["ceiling_usage"] = _phase(usage, _usage(cp))
    if profile is not None:
        results["ceiling_apiserver_cpu"] = profile.done()
    if "floor_seconds_to_all_available" in results:
        results["floor_to_ceiling_ratio"] = round(
            results["floor_seconds_to_all_available"] / results["ceiling_seconds_to_all_ready"], 2
        )
    cp.kubectl("delete", "namespace", CEILING_NAMESPACE, "--wait=true", timeout=args.timeout)


async def _least_operator(cp: ControlPlane, args: argparse.Namespace, started: float) -> dict[str, float]:
    """Apply the Chutes with kubectl, as the operator's phase does; meanwhile, through the operator's
    client, CEILING_CONCURRENCY calls at a time: each Chute's children as soon as a watch shows the
    Chute, and its status once a poll (as the floor's) shows its Deployment available. The seconds
    from ``started`` to each step's end."""
    client = AsyncClient(KubeConfig.from_file(str(cp.kubeconfig)))
    api = KubeApi(client, "ceiling", "ceiling", "ceiling")
    gate = asyncio.Semaphore(CEILING_CONCURRENCY)
    steps: dict[str, float] = {}

    def mark(step: str) -> None:
        steps[step] = round(time.monotonic() - started, 1)

    async def call(request: Any) -> None:
        async with gate:
            await request

    async def children(chute: dict[str, Any]) -> None:
        for manifest in _children(chute):
            await call(api.apply(manifest))

    async def watch_and_apply() -> None:
        seen: set[str] = set()
        work = []
        async for _, chute in client.watch(ChuteResource, namespace=CEILING_NAMESPACE):
            body = chute.to_dict()
            if body["metadata"]["name"] not in seen:
                seen.add(body["metadata"]["name"])
                work.append(asyncio.create_task(children(body)))
            if len(seen) == args.chutes:
                break
        await asyncio.gather(*work)
        mark("children_applied")

    async def wait_and_write_status() -> None:
        written: set[str] = set()
        work = []
        while len(written) < args.chutes:
            if time.monotonic() - started > args.timeout:
                raise TimeoutError(f"ceiling: only {len(written)} of {args.chutes} available")
            await asyncio.sleep(1)
            for name in await asyncio.to_thread(_available_names, cp, CEILING_NAMESPACE):
                if name not in written:
                    written.add(name)
                    work.append(
                        asyncio.create_task(call(api.patch_status(CEILING_NAMESPACE, name, READY_STATUS)))
                    )
        mark("all_available")
        await asyncio.gather(*work)
        mark("statuses_written")

    documents = "\n---\n".join(json.dumps(_chute(i, CEILING_NAMESPACE)) for i in range(args.chutes))

    async def apply_chutes() -> None:
        await asyncio.to_thread(cp.kubectl, *_chutes_apply(args), input=documents, timeout=300)
        mark("chutes_applied")

    try:
        async with asyncio.TaskGroup() as steps_under_way:  # one failing cancels the others
            for step in (apply_chutes(), watch_and_apply(), wait_and_write_status()):
                steps_under_way.create_task(step)
    finally:
        await api.close()
        await client.close()
    return steps


def _chutes_apply(args: argparse.Namespace) -> tuple[str, ...]:
    """The kubectl command that applies the Chutes (from standard input), in every phase that does."""
    server_side = () if args.client_side_chutes else ("--server-side", "--field-manager=bench")
    return ("apply", *server_side, "-f", "-")


def _settle(
    cp: ControlPlane, quiet: float = 0.25, window: float = 5.0, limit: float = 180.0
) -> dict[str, Any]:
    """Wait until the control plane uses under ``quiet`` of a core over ``window`` seconds (a deleted
    namespace's objects collected, the controllers idle), at most ``limit`` seconds: the seconds
    waited, and whether it went quiet."""
    began = time.monotonic()
    before = sum(process_cpu(CONTROL_PLANE).values())
    went_quiet = False
    while not went_quiet and time.monotonic() - began < limit:
        time.sleep(window)
        now = sum(process_cpu(CONTROL_PLANE).values())
        went_quiet, before = (now - before) / window < quiet, now
    return {"seconds": round(time.monotonic() - began, 1), "quiet": went_quiet}


def _deployment_generation(cp: ControlPlane, name: str) -> int:
    jsonpath = "-o=jsonpath={.metadata.generation}"
    return int(cp.kubectl("get", "deployment", name, "-n", NAMESPACE, jsonpath).stdout or 0)


def _spec_change_latency(
    cp: ControlPlane, operator: OperatorProcess, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    """Patch SPEC_CHANGES Chutes one at a time (a new image tag) while all exist; time each from the
    patch to its Deployment's next generation (polled every 50 ms through kubectl, so each figure
    includes up to one kubectl round trip). A change not seen within SPEC_CHANGE_LIMIT counts as missed."""
    latencies, missed = [], []
    for i in range(min(SPEC_CHANGES, args.chutes)):
        name = f"bench-{i * max(1, args.chutes // SPEC_CHANGES):04d}"
        before = _deployment_generation(cp, name)
        patch = json.dumps({"spec": {"image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9"}})
        started = time.monotonic()
        cp.kubectl("patch", "chute", name, "-n", NAMESPACE, "--type=merge", "-p", patch)
        while _deployment_generation(cp, name) == before and time.monotonic() - started < SPEC_CHANGE_LIMIT:
            time.sleep(0.05)
        if _deployment_generation(cp, name) == before:
            missed.append(name)
        else:
            latencies.append(time.monotonic() - started)
    if missed:
        print(f"spec changes not in the Deployment within {SPEC_CHANGE_LIMIT}s: {missed}", file=sys.stderr)
        print(operator.log_tail(60), file=sys.stderr)
    results["spec_changes_measured"] = len(latencies)
    results["spec_changes_missed"] = len(missed)
    results["spec_change_limit_seconds"] = SPEC_CHANGE_LIMIT
    if latencies:
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        results["spec_to_deployment_p50_seconds"] = round(latencies[len(latencies) // 2], 2)
        results["spec_to_deployment_p99_seconds"] = round(p99, 2)


def _quiet(operator: OperatorProcess, still: float = QUIET_SECONDS, limit: float = 120) -> float:
    """Seconds until the operator has written nothing for ``still`` seconds (at most ``limit``).

    All Ready is not the end of the writes: each HPA's first sync (up to 15 s after it appears) gives
    its Chute an Autoscaling condition. The restart's zero-write check starts from a quiet operator,
    or it would count those."""
    started = time.monotonic()
    last, since = operator.metric("chute_operator_api_writes_total"), time.monotonic()
    while time.monotonic() - since < still and time.monotonic() - started < limit:
        time.sleep(0.5)
        now = operator.metric("chute_operator_api_writes_total")
        if now != last:
            last, since = now, time.monotonic()
    return round(time.monotonic() - started - still, 1)


def _measure(
    cp: ControlPlane, operator: OperatorProcess, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    """Fill ``results``: to Ready, memory, writes, then a restart."""
    assert operator.process is not None
    idle = _proc(operator.process.pid)
    results["idle_rss_mb"] = round(idle["rss_mb"], 1)
    documents = "\n---\n".join(json.dumps(_chute(i)) for i in range(args.chutes))
    results["operator_settle"] = _settle(cp)
    usage = _usage(cp)
    profile = _profile(cp, args, "operator")
    started = time.monotonic()
    cp.kubectl(*_chutes_apply(args), input=documents, timeout=300)
    peak_queue = 0.0
    while _ready_count(cp) < args.chutes:
        if time.monotonic() - started > args.timeout:
            raise SystemExit(f"only {_ready_count(cp)}/{args.chutes} Ready after {args.timeout}s")
        peak_queue = max(peak_queue, operator.metric("chute_operator_queue_depth"))
        time.sleep(1)
    results["seconds_to_all_ready"] = round(time.monotonic() - started, 1)
    results["operator_usage"] = _phase(usage, _usage(cp))
    if "floor_seconds_to_all_available" in results:
        results["floor_to_operator_ratio"] = round(
            results["floor_seconds_to_all_available"] / results["seconds_to_all_ready"], 2
        )
    loaded = _proc(operator.process.pid)
    results["rss_mb_after"] = round(loaded["rss_mb"], 1)
    results["peak_rss_mb"] = round(loaded["peak_rss_mb"], 1)
    results["operator_cpu_seconds"] = round(loaded["cpu_seconds"] - idle["cpu_seconds"], 1)
    results["writes_to_ready"] = operator.metric("chute_operator_api_writes_total")
    results["writes_per_chute"] = round(results["writes_to_ready"] / args.chutes, 2)
    results["writes_per_chute_by_kind"] = {
        kind: round(operator.metric("chute_operator_api_writes_total", kind=kind) / args.chutes, 2)
        for kind in WRITE_KINDS
    }
    results["peak_queue_depth_sampled"] = peak_queue
    reconciles = operator.metric("chute_operator_reconcile_duration_seconds_count")
    results["reconciles_to_ready"] = reconciles
    results["reconciles_per_chute"] = round(reconciles / args.chutes, 2)
    results["mean_reconcile_ms"] = round(
        1000 * operator.metric("chute_operator_reconcile_duration_seconds_sum") / max(reconciles, 1), 2
    )
    results["operator_events_by_reason"] = _chute_events(cp)
    if profile is not None:  # after the figures above, which its last slice would have moved
        results["operator_apiserver_cpu"] = profile.done()
    results["seconds_to_quiet_after_ready"] = _quiet(operator)
    results["writes_after_ready_to_quiet"] = (
        operator.metric("chute_operator_api_writes_total") - (results["writes_to_ready"])
    )
    operator.stop()
    restarted = time.monotonic()
    operator.start()
    while operator.metric("chute_operator_reconciles_total", result="success") < args.chutes:
        time.sleep(0.5)
    results["restart_seconds_to_reconcile_all"] = round(time.monotonic() - restarted, 1)
    time.sleep(5)
    results["writes_after_restart"] = operator.metric("chute_operator_api_writes_total")
    results["writes_after_restart_by_kind"] = {
        kind: operator.metric("chute_operator_api_writes_total", kind=kind) for kind in WRITE_KINDS
    }
    results["rss_mb_after_restart"] = round(_proc(operator.process.pid)["rss_mb"], 1)
    _spec_change_latency(
        cp, operator, args, results
    )  # after the restart's zero-write check: rollouts write status
    results["peak_rss_mb_restarted_operator"] = round(_proc(operator.process.pid)["peak_rss_mb"], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chutes", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--no-floor", action="store_true", help="skip the floor measurement")
    parser.add_argument(
        "--client-side-chutes",
        action="store_true",
        help="apply the Chutes with a client-side kubectl apply (as every run before 2026-12-04 17:00 UTC)",
    )
    parser.add_argument(
        "--results", help="results file name (default: operator.json for 200, else operator-<N>.json)"
    )
    parser.add_argument(
        "--ceiling", action="store_true", help="measure the least any operator adds to the floor, too"
    )
    parser.add_argument(
        "--apiserver-profile",
        action="store_true",
        help="profile kube-apiserver's CPU through each phase (the Go toolchain sorts it)",
    )
    args = parser.parse_args()
    pools = [NodePool("cpu", 2, "bench.cpu", "512", "4Ti", "4Ti", pods=args.chutes + 50)]
    results: dict[str, Any] = {
        "chutes": args.chutes,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "operator_workers": os.environ.get("CHUTE_OPERATOR_WORKERS", "default"),
        "chutes_applied_with": "kubectl apply" if args.client_side_chutes else "kubectl apply --server-side",
    }
    if args.apiserver_profile:
        go_tool()  # before the run, not after its first phase
    profiling = ("--profiling=true",) if args.apiserver_profile else ()
    with ControlPlane(node_pools=pools, apiserver_args=profiling) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        try:
            if not args.no_floor:
                _floor(cp, args, results)
            if args.ceiling:
                _ceiling(cp, args, results)
            cp.kubectl("create", "namespace", NAMESPACE)
            operator = OperatorProcess(
                cp.kubeconfig, cp.work_dir, "bench", CHUTE_OPERATOR_LOG_LEVEL="WARNING"
            ).start()
            try:
                _measure(cp, operator, args, results)
            finally:
                operator.stop()
        finally:
            for profile in PROFILES:
                profile.abandon()
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    out = RESULTS / _results_name(args)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("| measure | value |\n| --- | --- |")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
