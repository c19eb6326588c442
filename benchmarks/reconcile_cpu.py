"""CPU of a reconcile that changes nothing, and of its parts (no cluster: a fake API and a filled store).

The 200-Chute run that did not finish (docs/benchmarks/operator.md) reconciled unchanged Chutes at
~37 a second; this measures what one such reconcile costs now, and its parts: building the children
(``children.py``; until 2026-12-07 jinja2 templates parsed by PyYAML, whose numbers are in
``reconcile_cpu.json`` and ``reconcile_cpu-templates.json``), the hash stamp and the drift check.

Also the reconcile of a restarted operator (``cold_reconcile_cpu_ms``): a new Reconciler over the same
filled store, which renders every Chute once before it finds its children unchanged, and the children
of one Chute built from its Workload (``render_children_ms``, the hash stamps included).

Run: .venv/bin/python benchmarks/reconcile_cpu.py [--chutes 200] [--results reconcile_cpu.json]
Writes benchmarks/results/<results>.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.operator_scale import _chute  # noqa: E402

from chute_operator import render as rendering  # noqa: E402
from chute_operator.children import render_workload  # noqa: E402
from chute_operator.drift import drifted, stamped  # noqa: E402
from chute_operator.gpus import builtin_catalog  # noqa: E402
from chute_operator.metrics import OperatorMetrics  # noqa: E402
from chute_operator.reconcile import Reconciler  # noqa: E402
from chute_operator.store import Store  # noqa: E402
from chute_operator.validation import parse_chute  # noqa: E402
from chute_operator.workload import RenderOptions, resolve  # noqa: E402

OPTIONS = RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test")


class _Api:
    """Applies store what was sent (with a ready Deployment); status patches return the Chute."""

    field_manager = "chute-operator"

    def __init__(self, store: Store) -> None:
        self.store, self.version, self.writes = store, 100, 0

    async def apply(self, manifest: dict[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        self.writes += 1
        self.version += 1
        stored = copy.deepcopy(manifest)
        stored["metadata"].update(uid=f"{manifest['metadata']['name']}-{manifest['kind']}")
        stored["metadata"].update(resourceVersion=str(self.version), generation=1)
        if manifest["kind"] == "Deployment":
            ready = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
            stored["status"] = {"observedGeneration": 1, **ready}
        return stored

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        self.version += 1
        chute = copy.deepcopy(self.store.get("Chute", (namespace, name)) or {})
        chute["status"] = status
        chute["metadata"]["resourceVersion"] = str(self.version)
        return chute

    async def event(self, *args: Any) -> None:
        self.writes += 1

    async def kind_served(self, kind: str) -> bool:
        return False


def _per_call_ms(work: Callable[[], object], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        work()
    return round(1000 * (time.process_time() - started) / repeat, 3)


async def _unchanged_reconcile_ms(chutes: int) -> tuple[float, int, float, int]:
    """CPU per reconcile of unchanged Chutes and its writes: by the reconciler that applied them,
    then by a new one (an operator restarted)."""
    store = Store()
    api = _Api(store)
    reconciler = Reconciler(api, store, OPTIONS, OperatorMetrics(), lambda: True)  # type: ignore[arg-type]
    keys = []
    for i in range(chutes):
        chute = _chute(i)
        chute["metadata"].update(uid=f"uid-{i}", generation=1, resourceVersion="5")
        store.put("Chute", chute)
        keys.append(("bench", chute["metadata"]["name"]))
    for _ in range(3):  # create, then settle the status
        for key in keys:
            await reconciler.reconcile(key)
    api.writes = 0
    started = time.process_time()
    for key in keys:
        await reconciler.reconcile(key)
    warm, warm_writes = round(1000 * (time.process_time() - started) / chutes, 3), api.writes
    restarted = Reconciler(api, store, OPTIONS, OperatorMetrics(), lambda: True)  # type: ignore[arg-type]
    api.writes = 0
    started = time.process_time()
    for key in keys:
        await restarted.reconcile(key)
    return warm, warm_writes, round(1000 * (time.process_time() - started) / chutes, 3), api.writes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chutes", type=int, default=200)
    parser.add_argument("--results", default="reconcile_cpu.json", help="file name in benchmarks/results")
    args = parser.parse_args()
    chute = _chute(1)
    chute["metadata"].update(uid="uid-1", generation=1)
    workload = resolve(parse_chute(chute), OPTIONS)
    manifests = render_workload(workload)
    desired = [stamped(m) for m in manifests]
    repeat = 100
    unchanged_ms, writes, cold_ms, cold_writes = asyncio.run(_unchanged_reconcile_ms(args.chutes))
    results = {
        "chutes": args.chutes,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "unchanged_reconcile_cpu_ms": unchanged_ms,
        "unchanged_reconcile_writes": writes,
        "cold_reconcile_cpu_ms": cold_ms,
        "cold_reconcile_writes": cold_writes,
        "render_children_ms": _per_call_ms(lambda: rendering.DesiredManifests().of("key", workload), repeat),
        "parts_cpu_ms_per_chute": {
            "parse_and_resolve": _per_call_ms(lambda: resolve(parse_chute(chute), OPTIONS), repeat),
            "build_children": _per_call_ms(lambda: render_workload(workload), repeat),
            "hash_stamp": _per_call_ms(lambda: [stamped(m) for m in manifests], repeat),
            "drift_check": _per_call_ms(lambda: [drifted(m, m) for m in desired], repeat),
            "memo_hit_json": _per_call_ms(lambda: json.loads(json.dumps(desired)), repeat),
        },
    }
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    out = ROOT / "benchmarks" / "results" / args.results
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
