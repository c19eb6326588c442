"""Where a cold operator's memory goes: N Chutes to Ready, then restarts of the operator under
benchmarks/memprobe.py, each sampled (RSS every 0.25 s; when kopf's initial listings and the operator's
cache sync start and end) and reported once every Chute is reconciled and the start-up burst is over:
RSS, glibc's mallinfo2, CPython's pymalloc arenas, then the same after ``gc.collect()`` and after
``malloc_trim(0)``. The ``tracemalloc`` restart also keeps the top allocations by traceback at its
highest traced total and after all reconciled (tracing slows the process and is not counted in RSS
comparisons).

Run: .venv/bin/python benchmarks/operator_restart_memory.py [--chutes 1000]
Writes benchmarks/results/operator-restart-memory-<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from operator_scale import NAMESPACE, _chute, _proc, _quiet, _ready_count  # noqa: E402
from tests.operator_fixtures import OperatorProcess  # noqa: E402

from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_devcluster.nodes import NodePool  # noqa: E402

SETTLE_SECONDS = 8.0
"""After all reconciled, before the report: kopf's per-object workers exit after 5 s idle."""
VARIANTS: dict[str, dict[str, str]] = {
    "plain": {},
    "kopf_idle_timeout_0.5": {"MEMPROBE_KOPF_IDLE_TIMEOUT": "0.5"},
    "tracemalloc": {"MEMPROBE_TRACEMALLOC": "12"},
    "malloc_arena_max_2": {"MALLOC_ARENA_MAX": "2"},
}


class ProbedOperator(OperatorProcess):
    def command(self) -> list[str]:
        return [sys.executable, str(ROOT / "benchmarks" / "memprobe.py"), "run", "--all-namespaces"]


def _metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    """The metric, or 0 when the operator does not answer in time (a tracemalloc snapshot holds the GIL)."""
    try:
        return operator.metric(name, **labels)
    except OSError:
        return 0.0


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _command(probe: Path, number: int, action: str, label: str, timeout: float = 180) -> dict[str, Any]:
    (probe / f"do-{number:02d}-{action}-{label}").touch()
    deadline = time.monotonic() + timeout
    while not (probe / f"done-{number:02d}-{action}-{label}").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"memprobe did not answer {action} {label}")
        time.sleep(0.2)
    return json.loads((probe / f"{label}.json").read_text())


def _restart(cp: ControlPlane, args: argparse.Namespace, variant: str) -> dict[str, Any]:
    probe = cp.work_dir / f"memprobe-{variant}"
    shutil.rmtree(probe, ignore_errors=True)
    operator = ProbedOperator(
        cp.kubeconfig, cp.work_dir, "bench", CHUTE_OPERATOR_LOG_LEVEL="WARNING",
        MEMPROBE_DIR=str(probe), **VARIANTS[variant],
    )  # fmt: skip
    started = time.monotonic()
    operator.start()
    assert operator.process is not None
    out: dict[str, Any] = {"seconds_to_healthy": round(time.monotonic() - started, 1)}
    first = None
    while (done := _metric(operator, "chute_operator_reconciles_total", result="success")) < args.chutes:
        if first is None and done > 0:
            first = round(time.monotonic() - started, 1)
        if time.monotonic() - started > args.timeout:
            raise SystemExit(f"{variant}: {done}/{args.chutes} reconciled")
        time.sleep(0.25)
    out["seconds_to_first_reconcile"] = first
    out["seconds_to_reconcile_all"] = round(time.monotonic() - started, 1)
    out["rss_mb_when_all_reconciled"] = round(_proc(operator.process.pid)["rss_mb"], 1)
    time.sleep(SETTLE_SECONDS)
    out["writes"] = _metric(operator, "chute_operator_api_writes_total")
    out["settled"] = _command(probe, 1, "trim", "settled")
    out["rss_mb_a_while_after_trim"] = None
    time.sleep(3)
    out["rss_mb_a_while_after_trim"] = round(_proc(operator.process.pid)["rss_mb"], 1)
    operator.stop()
    out["events"] = _jsonl(probe / "events.jsonl")
    timeline = _jsonl(probe / "timeline.jsonl")
    out["peak_rss_mb"] = max((r["VmHWM"] for r in timeline), default=None)
    out["timeline_every_second"] = timeline[::4]
    if (probe / "peak.json").exists():
        out["tracemalloc_peak"] = json.loads((probe / "peak.json").read_text())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chutes", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="restarts, in order")
    parser.add_argument("--results", help="results file name")
    args = parser.parse_args()
    pools = [NodePool("cpu", 2, "bench.cpu", "512", "4Ti", "4Ti", pods=args.chutes + 50)]
    results: dict[str, Any] = {
        "chutes": args.chutes,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "restarts": {},
    }
    name = args.results or f"operator-restart-memory-{args.chutes}.json"
    out = ROOT / "benchmarks" / "results" / name
    with ControlPlane(node_pools=pools) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        cp.kubectl("create", "namespace", NAMESPACE)
        operator = OperatorProcess(
            cp.kubeconfig, cp.work_dir, "bench", CHUTE_OPERATOR_LOG_LEVEL="WARNING"
        ).start()
        assert operator.process is not None
        try:
            results["idle_rss_mb"] = round(_proc(operator.process.pid)["rss_mb"], 1)
            documents = "\n---\n".join(json.dumps(_chute(i)) for i in range(args.chutes))
            started = time.monotonic()
            cp.kubectl("apply", "-f", "-", input=documents, timeout=300)
            while _ready_count(cp) < args.chutes:
                if time.monotonic() - started > args.timeout:
                    raise SystemExit(f"only {_ready_count(cp)}/{args.chutes} Ready after {args.timeout}s")
                time.sleep(2)
            results["seconds_to_all_ready"] = round(time.monotonic() - started, 1)
            _quiet(operator, limit=60)
            running = _proc(operator.process.pid)
            results["running_rss_mb"] = round(running["rss_mb"], 1)
            results["running_peak_rss_mb"] = round(running["peak_rss_mb"], 1)
        finally:
            operator.stop()
        for variant in args.variants.split(","):
            results["restarts"][variant] = _restart(cp, args, variant)
            out.write_text(json.dumps(results, indent=1) + "\n")
            print(
                variant,
                {k: v for k, v in results["restarts"][variant].items() if not isinstance(v, (list, dict))},
            )
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
