"""The operator-at-scale table of docs/benchmarks/operator.md, generated from the results files of
benchmarks/operator_scale.py (operator.json for 200 Chutes, operator-<N>.json for other sizes).

Run: .venv/bin/python benchmarks/operator_table.py   (prints the Markdown table)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from apiserver_profile import table as apiserver_table
from operator_scale import CONTROL_PLANE

RESULTS = Path(__file__).resolve().parent / "results"
FILES = (
    "operator-200-before.json",
    "operator.json",
    "operator-500.json",
    "operator-1000.json",
    "operator-1000-slim.json",
    "operator-1000-no-applied-event.json",
    "operator-1000-usage.json",
    "operator-1000-api-polls.json",
    "operator-1000-no-diffbase.json",
    "operator-1000-no-echo.json",
    "operator-200-quiet.json",
    "operator-500-quiet.json",
    "operator-1000-transport.json",
    "operator-1000-status-wait.json",
    "operator-1000-status-wait-2.json",
    "operator-200-status-wait.json",
    "operator-500-status-wait.json",
    "operator-1000-status-wait-client-side.json",
    "operator-1000-trust-env.json",
    "operator-1000-final.json",
    "operator-1000-structure.json",
    "operator-1000-structure-2.json",
    "operator-1000-fleet-changes.json",
    "operator-1000-children.json",
    "operator-1000-ceiling.json",
    "operator-1000-ceiling-2.json",
    "operator-1000-ceiling-profiled.json",
    "operator-1000-informers.json",
    "operator-1000-informers-profiled.json",
    "operator-1000-informers-2.json",
)
"""In order: 200 Chutes before the handler fix (4 workers), then the code of each run's date at 200,
500, 1000, and 1000 with the store keeping only what its readers use of pods (store.slim); then the
2026-12-04 runs at 1000 on a quiet machine: without the Applied event of a new Chute, the same with
CPU and requests per phase recorded, the benchmark polling through the API client instead of
kubectl, kopf building no essence of each object (NoDiffBase), and no reconcile for the echo of the
operator's own writes; then 200 and 500 on that code, on the same quiet machine. Last, the later
2026-12-04 runs: the operator's API calls through its aiohttp transport (at 1000), then also a status
that waits for the Deployment's controller, with the Chutes applied server-side as the floor's
children are (twice at 1000, then 200 and 500); the same with the Chutes applied client-side as before
(--client-side-chutes); a run on the commit whose transport read the proxy environment on every
request (aiohttp's trust_env, since fixed); and the final code at 1000. Then, 2026-12-06, twice at
1000 on a quiet machine: the code after the restructuring of issue 24 (reconcile as observe, plan,
act; settings read once), which promised no change in behaviour. Last, 2026-12-07 at 1000: the code
after issue 30's changes (commit 29a2257: the metric grace, the store's shared strings, kopf's
per-object memories dropped, the queue's background lane); then at 1000 on commit 2aae6b0, the children
built without YAML (children.py). Last, 2026-12-08 at 1000 on the same operator code, three runs with the
ceiling phase between the floor and the operator (--ceiling: the least any operator adds), the third
with kube-apiserver profiled through each phase (--apiserver-profile). Last, three runs with the
ceiling after the operator's own informers replaced kopf's watches of most kinds (commit 233131f,
then 4e192ca with the breaking pass's fixes for the profiled run and the last)."""


def _runs() -> list[tuple[str, dict[str, Any]]]:
    return [(name, json.loads((RESULTS / name).read_text())) for name in FILES if (RESULTS / name).exists()]


def _restart(run: dict[str, Any]) -> str:
    return (
        f"{run['restart_seconds_to_reconcile_all']} s / {run['writes_after_restart']:.0f} / "
        f"{run['rss_mb_after_restart']:.0f} MB"
    )


def _spec(run: dict[str, Any]) -> str:
    if "spec_to_deployment_p99_seconds" not in run:
        return "not measured"
    missed, limit = run.get("spec_changes_missed", 0), run.get("spec_change_limit_seconds", 10.0)
    total = run["spec_changes_measured"] + missed
    if missed:
        return f"> {limit:.0f} s ({missed} of {total} changes not in the Deployment within {limit:.0f} s)"
    p50 = run["spec_to_deployment_p50_seconds"]
    return f"{run['spec_to_deployment_p99_seconds']} s (p50 {p50} s, {total} changes)"


def table() -> str:
    rows = [
        "| Chutes (results file, run date) | floor / operator to all Ready | ratio | writes per Chute "
        "| reconciles per Chute | operator CPU "
        "| peak RSS | restart: time / writes / RSS | restart: peak RSS "
        "| p99 spec -> Deployment | load average start -> end |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in _runs():
        rows.append(
            f"| {run['chutes']} (`{name}`, {run['date']}) | {run['floor_seconds_to_all_available']} s / "
            f"{run['seconds_to_all_ready']} s | {run['floor_to_operator_ratio']} | {run['writes_per_chute']} "
            f"| {run['reconciles_to_ready'] / run['chutes']:.1f} | {run['operator_cpu_seconds']} s "
            f"| {run['peak_rss_mb']:.0f} MB | {_restart(run)} "
            f"| {run['peak_rss_mb_restarted_operator']:.0f} MB "
            f"| {_spec(run)} "
            f"| {run['load_average_at_start']} -> {run['load_average_at_end']} |"
        )
    return "\n".join(rows)


def _usage_cells(usage: dict[str, Any]) -> list[str]:
    cpu, requests = usage["cpu_seconds"], usage["api_requests_by_verb"]
    return [
        f"{usage['machine_cpu_busy_fraction']:.0%}",
        *(f"{cpu[name]:.0f} s" for name in CONTROL_PLANE),
        f"{sum(requests.values()):,}",
    ]


def usage_table() -> str:
    """Per run that recorded it: the CPU of each phase (floor, ceiling, operator to all Ready) and the
    API server's requests, all clients together."""
    rows = [
        "| results file | phase | seconds | both cores busy | kube-apiserver | etcd "
        "| kube-controller-manager | kube-scheduler | kwok | operator | benchmark | API requests |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in _runs():
        if "floor_usage" not in run:
            continue
        phases = [("floor", run["floor_seconds_to_all_available"], run["floor_usage"], "-")]
        if "ceiling_usage" in run:
            phases.append(("ceiling", run["ceiling_seconds_to_all_ready"], run["ceiling_usage"], "-"))
        operator_cpu = f"{run['operator_cpu_seconds']:.0f} s"
        phases.append(("operator", run["seconds_to_all_ready"], run["operator_usage"], operator_cpu))
        for phase, seconds, usage, operator in phases:
            cells = _usage_cells(usage)
            benchmark = f"{usage['benchmark_cpu_seconds']:.0f} s" if "benchmark_cpu_seconds" in usage else "-"
            rows.append(
                f"| `{name}` | {phase} | {seconds} | {' | '.join(cells[:-1])} | {operator} | {benchmark} "
                f"| {cells[-1]} |"
            )
    return "\n".join(rows)


def ceiling_table() -> str:
    """Per run with the ceiling phase: the floor, the least any operator adds to it, the operator."""
    rows = [
        "| results file | floor | ceiling | operator | floor / ceiling | floor / operator "
        "| the operator's ratio, of the ceiling's | kube-apiserver CPU: floor / ceiling / operator |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, run in _runs():
        if "ceiling_seconds_to_all_ready" not in run or "floor_usage" not in run:
            continue
        api = [
            run[f"{phase}_usage"]["cpu_seconds"]["kube-apiserver"]
            for phase in ("floor", "ceiling", "operator")
        ]
        share = run["ceiling_seconds_to_all_ready"] / run["seconds_to_all_ready"]  # of the two ratios
        seconds = (
            run["floor_seconds_to_all_available"],
            run["ceiling_seconds_to_all_ready"],
            run["seconds_to_all_ready"],
        )
        rows.append(
            f"| `{name}` | {' | '.join(f'{x} s' for x in seconds)} | {run['floor_to_ceiling_ratio']} "
            f"| {run['floor_to_operator_ratio']} | {share:.0%} | {' / '.join(f'{x:.0f} s' for x in api)} |"
        )
    return "\n".join(rows)


def apiserver_cpu_tables() -> str:
    """Per run that profiled kube-apiserver: its CPU in each phase by kind of work."""
    tables = []
    for name, run in _runs():
        phases = {
            phase: {k: v for k, v in run[f"{phase}_apiserver_cpu"].items() if k != "profile"}
            for phase in ("floor", "ceiling", "operator")
            if f"{phase}_apiserver_cpu" in run
        }
        if phases:
            tables.append(f"`{name}`:\n\n{apiserver_table(phases)}")
    return "\n\n".join(tables)


RECONCILE_CPU_FILES = ("reconcile_cpu-templates.json", "reconcile_cpu-children.json")
"""benchmarks/reconcile_cpu.py on 2026-12-07: the children rendered from jinja2 templates and parsed by
libyaml (commit 1805909), then built as Python data (children.py) with the lighter hash stamp."""


def reconcile_cpu_table() -> str:
    """CPU per reconcile of an unchanged Chute, warm and by a restarted operator, and per Chute's
    stamped children."""
    rows = [
        "| results file | run date | reconcile, warm | reconcile, restarted operator | a Chute's children "
        "(stamped) | of which: built | hash stamps |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in RECONCILE_CPU_FILES:
        run = json.loads((RESULTS / name).read_text())
        parts = run["parts_cpu_ms_per_chute"]
        built = (  # the templates: jinja2, then libyaml
            parts["build_children"]
            if "build_children" in parts
            else round(parts["jinja2_render"] + parts["yaml_libyaml_now"], 3)
        )
        rows.append(
            f"| `{name}` | {run['date']} | {run['unchanged_reconcile_cpu_ms']} ms "
            f"| {run['cold_reconcile_cpu_ms']} ms | {run['render_children_ms']} ms | {built} ms "
            f"| {parts['hash_stamp']} ms |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
    print()
    print(usage_table())
    print()
    print(reconcile_cpu_table())
    print()
    print(ceiling_table())
    print()
    print(apiserver_cpu_tables())
