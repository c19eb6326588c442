"""The scale-from-zero breakdown table and summary of docs/scale-to-zero.md, from the results files.

    .venv/bin/python benchmarks/scale_to_zero_table.py

Reads benchmarks/results/scale-to-zero-real-node-before.json (before the activator asked sidecars
and the probes ran every second), scale-to-zero-real-node.json (now) and
scale-to-zero-real-node-ten.json (now, a second run of 10); tests/unit/test_docs.py
checks that the docs show exactly this.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scale_to_zero_harness import STAGES  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BEFORE, NOW = "scale-to-zero-real-node-before.json", "scale-to-zero-real-node.json"
TEN = "scale-to-zero-real-node-ten.json"
DATA_PATH = "scale-to-zero-data-path-real-node.json"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RESULTS / name).read_text())
    return loaded


def _cell(medians: dict[str, float], name: str) -> str:
    return f"{medians[name]:.2f}" if name in medians else "-"


def table() -> str:
    before, now = _load(BEFORE), _load(NOW)
    rows = [
        "| stage | seconds after the request (median): before | now |",
        "| --- | ---: | ---: |",
    ]
    for name, what in STAGES:
        rows.append(
            f"| {what} | {_cell(before['stage_medians_s'], name)} | {_cell(now['stage_medians_s'], name)} |"
        )
    return "\n".join(rows)


SPLIT = (
    ("until the pod exists (activator, operator, Deployment, ReplicaSet controller)", None, "pod_created"),
    ("pod start until the model server begins loading (scheduler, kubelet, containerd, the process start)",
     "pod_created", "model_loading"),
    ("from the model loaded to the client's answer (sidecar poll, activator, forward)",
     "model_loaded", "client_answered"),
)  # fmt: skip


def p95(values: list[float]) -> float:
    """Nearest rank, as benchmarks/scale_to_zero.py: with fewer than 20 runs, the largest."""
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def summary() -> str:
    """Per results file: runs, load time, the added delay (median, p95) and where it went."""
    lines = []
    for label, name in (("before", BEFORE), ("now", NOW), ("now, 10 more runs", TEN)):
        result, added = _load(name), _load(name)["added_beyond_load_s"]
        load = result["setup"].rsplit("model load ", 1)[-1]
        measured = result.get("added_beyond_measured_load_s")
        beyond_measured = (
            f"; beyond the load as measured (model container running to its /health 200) median "
            f"**{measured['median']:.2f} s**, p95 **{measured['p95']:.2f} s**"
            if measured
            else ""
        )
        lines.append(
            f"- **{label}**: {len(result['runs'])} runs, model load {load}: added beyond the load median "
            f"**{added['median']:.2f} s**, p95 **{added['p95']:.2f} s**{beyond_measured} "
            f"(`benchmarks/results/{name}`); of it"
        )
        for what, start, end in SPLIT:
            spans = sorted(
                r["stages_s"][end] - (r["stages_s"][start] if start else 0.0)
                for r in result["runs"]
                if end in r["stages_s"] and (start is None or start in r["stages_s"])
            )
            lines.append(f"  - {what}: median {statistics.median(spans):.2f} s, p95 {p95(spans):.2f} s")
    return "\n".join(lines)


def data_path() -> str:
    """The ClusterIP's latency at ready with the activator running and stopped (``--data-path``)."""
    result = _load(DATA_PATH)
    running, stopped = result["cluster_ip_activator_running"], result["cluster_ip_activator_stopped"]
    through = result["through_activator"]
    moved = sum(result["activator_counters_moved_by_cluster_ip_requests"])
    return (
        f"- **while a replica is ready** ({running['requests']} requests per case, a new connection each, to "
        f"the Chute Service's ClusterIP): p50 **{running['p50_ms']:.2f} ms**, "
        f"p95 **{running['p95_ms']:.2f} ms** with the activator running against "
        f"p50 **{stopped['p50_ms']:.2f} ms**, p95 **{stopped['p95_ms']:.2f} ms** with it stopped; "
        f"its counters moved by {moved:g} during them. Sent "
        f"to the activator itself instead, the same requests took p50 {through['p50_ms']:.2f} ms, p95 "
        f"{through['p95_ms']:.2f} ms (`benchmarks/results/{DATA_PATH}`)"
    )


if __name__ == "__main__":
    print(table())
    print()
    print(summary())
    print()
    print(data_path())
