"""The tables of docs/benchmarks/fleet.md, generated from the results files of
benchmarks/scraper_scale.py (scraper-scale.json) and benchmarks/fleet_scale.py (fleet-<N>*.json).

Run: .venv/bin/python benchmarks/fleet_table.py   (prints the Markdown tables)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
FLEET_FILES = (
    "fleet-1000-before.json",
    "fleet-1000.json",
    "fleet-2000.json",
    "fleet-5000-stopped.json",
    "fleet-1000-all-awake.json",
    "fleet-1000-all-awake-after.json",
    "fleet-1000-shared-strings.json",
    "fleet-5000.json",
    "fleet-1000-final.json",
    "fleet-5000-final.json",
    "fleet-5000-children.json",
    "fleet-1000-informers.json",
)
"""In order: 1000 Chutes on the code before the scale-to-zero check skipped sleeping Chutes, the same
after, 2000 after, the first 5000 run (stopped by hand on an overloaded machine), 1000 Chutes all awake
(the scraper reading 1000 ready pods inside the operator) before and after the check left awake
Chutes that are not idle alone; then 1000 and 5000 Chutes with the metric grace, the metrics API that
waits for its caches, and the store's shared strings (the 5000 run also without kopf's per-object
memories), and 1000 Chutes on commit 26ecbfd (with the queue's background lane and the pods listed
first; the second breaking pass's fixes came after it). Then 5000 Chutes on commit bb194a5: all of
the above, the second breaking pass's fixes and the activator's slimmed caches. Last, 5000 Chutes on
commit 515d392: the children built without YAML (children.py), a failed metric read given its grace
from the operator's cache sync, and the benchmark reading the restarted operator's /metrics every 2 s
instead of 0.5 s. Then 1000 Chutes on commit 7c48908: the operator's own informers in place of kopf's
watches of most kinds, and orjson."""
KINDS = (
    "chutes", "deployments", "replicasets", "services", "endpointslices", "horizontalpodautoscalers",
    "networkpolicies", "servicemonitors", "events", "pods",
)  # fmt: skip


def _scraper() -> dict[str, Any]:
    found: dict[str, Any] = json.loads((RESULTS / "scraper-scale.json").read_text())
    return found


def scraper_table() -> str:
    rows = [
        "| code (label, run date) | pods | reads ok / failed | process CPU | of one core | CPU per read "
        "| user CPU share | load average start -> end |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, run in _scraper().items():
        for size in run["sizes"]:
            user = size.get("user_cpu_seconds")
            share = f"{user / size['cpu_seconds']:.0%}" if user is not None and size["cpu_seconds"] else "-"
            profiled = " (cProfile on)" if size.get("profiled") else ""
            rows.append(
                f"| {label} ({run['date']}) | {size['pods']}{profiled} "
                f"| {size['reads_ok']} / {size['reads_failed']} "
                f"| {size['cpu_seconds']} s in {size['seconds']} s | {size['core_fraction']:.1%} "
                f"| {size['cpu_us_per_read']} µs | {share} "
                f"| {run['load_average_at_start']} -> {run['load_average_at_end']} |"
            )
    return "\n".join(rows)


def _fleet() -> list[tuple[str, dict[str, Any]]]:
    return [(n, json.loads((RESULTS / n).read_text())) for n in FLEET_FILES if (RESULTS / n).exists()]


def fleet_table() -> str:
    rows = [
        "| Chutes, awake (results file, run date) | to settled | operator RSS: peak / steady | operator CPU, "
        "steady 60 s | reconciles to quiet | writes per Chute | restart: time / writes / RSS / peak "
        "| activator RSS | load average start -> end |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in _fleet():
        steady = run.get("steady") or {}
        if not steady:
            load = f"{run['load_average_at_start']} -> {run['load_average_at_end']}"
            head = f"{run['chutes']}, {run.get('awake_chutes')} (`{name}`, {run['date']})"
            last = (run.get("timeline") or [{}])[-1]
            stopped = (
                f"stopped at {last.get('t')} s: {last.get('deployments')} Deployments, "
                f"{last.get('pods')} pods, {last.get('sleepers_at_zero')} at zero"
            )
            rows.append(
                f"| {head} | {stopped} | {last.get('operator_rss_mb')} MB (then) | | | | | | {load} |"
            )
            continue
        restart = (
            f"{run['restart_seconds_to_reconcile_all']} s / {run['restart_writes_20s_after_all']:.0f} / "
            f"{run['restart_rss_mb']:.0f} MB / {run['restart_peak_rss_mb']:.0f} MB"
        )
        head = f"{run['chutes']}, {run['awake_chutes']} (`{name}`, {run['date']})"
        load = f"{run['load_average_at_start']} -> {run['load_average_at_end']}"
        rows.append(
            f"| {head} | {run['seconds_to_settled']} s "
            f"| {run['operator_peak_rss_mb']:.0f} MB / {steady['operator_rss_mb']:.0f} MB "
            f"| {steady['operator_cpu_seconds']} s ({steady['operator_core_fraction']:.1%} of a core) "
            f"| {run['reconciles_to_quiet']:.0f} | {run['writes_to_quiet_per_chute']} | {restart} "
            f"| {run['activator_rss_mb']:.0f} MB | {load} |"
        )
    return "\n".join(rows)


def etcd_table(results: str | None = None) -> str:
    """Per Chute, asleep and awake: objects and bytes in etcd, by kind (of ``results``; default: the
    largest finished run)."""
    runs = [(n, r) for n, r in _fleet() if r.get("etcd") and results in (None, n)]
    if not runs:
        return ""
    name, run = max(runs, key=lambda found: found[1]["chutes"] - found[1]["awake_chutes"])
    asleep_n, awake_n = run["chutes"] - run["awake_chutes"], run["awake_chutes"]
    rows = [
        f"`{name}`: {asleep_n} Chutes asleep, {awake_n} awake.",
        "",
        "| kind | per Chute asleep: objects / bytes | per Chute awake: objects / bytes |",
        "| --- | --- | --- |",
    ]
    total = {"asleep": 0.0, "awake": 0.0}
    for kind in KINDS:
        cells = []
        for group, count in (("asleep", asleep_n), ("awake", awake_n)):
            found = run["etcd"][kind][group]
            total[group] += found["bytes"] / max(count, 1)
            cells.append(f"{found['objects'] / max(count, 1):.2f} / {found['bytes'] / max(count, 1):,.0f}")
        rows.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    rows.append(f"| **all** | {total['asleep']:,.0f} bytes | {total['awake']:,.0f} bytes |")
    return "\n".join(rows)


def wake_table() -> str:
    rows = [
        "| results file | wakes | annotation -> Deployment scaled p50 / p95 | -> pod created p50 / p95 "
        "| -> pod Ready p50 / p95 | -> activator slice deleted p50 / p95 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in _fleet():
        if not run.get("wakes"):
            continue
        cells = [
            f"{run.get(f'wake_{stage}_p50_s')} s / {run.get(f'wake_{stage}_p95_s')} s"
            for stage in ("deployment_scaled", "pod_created", "pod_ready", "activator_slice_deleted")
        ]
        rows.append(f"| `{name}` | {len(run['wakes'])} | {' | '.join(cells)} |")
    return "\n".join(rows)


def activator_memory_table() -> str:
    """The activator's caches filled offline (benchmarks/activator_memory.py), full and slimmed."""
    run = json.loads((RESULTS / "activator-memory.json").read_text())
    rows = [
        f"`activator-memory.json` ({run['date']}): {run['chutes']} Chutes at zero, each with its "
        f"EndpointSlice (as sent: {run['captured_chute_json_bytes']:,} and "
        f"{run['captured_slices_json_bytes']:,} bytes of JSON).",
        "",
        "| the caches keep | RSS over the fill | traced by tracemalloc | traced per Chute |",
        "| --- | --- | --- | --- |",
    ]
    for variant, label in (("full", "each object as sent (before)"), ("slim", "what the activator reads")):
        found = run[variant]
        grown = found["rss_mb_after"] - found["rss_mb_before"]
        rows.append(
            f"| {label} | {grown:.1f} MB | {found['traced_mb']} MB | {found['traced_kb_per_chute']} KB |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    tables = (scraper_table(), fleet_table(), etcd_table(), etcd_table("fleet-2000.json"), wake_table())
    for part in (*tables, activator_memory_table()):
        print(part)
        print()
