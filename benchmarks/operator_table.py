"""The operator-at-scale table of docs/benchmarks/operator.md, generated from the results files of
benchmarks/operator_scale.py (operator.json for 200 Chutes, operator-<N>.json for other sizes).

Run: .venv/bin/python benchmarks/operator_table.py   (prints the Markdown table)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
FILES = (
    "operator-200-before.json",
    "operator.json",
    "operator-500.json",
    "operator-1000.json",
    "operator-1000-slim.json",
)
"""In order: 200 Chutes before the handler fix (4 workers), then the code of each run's date at 200,
500, 1000, and 1000 with the store keeping only what its readers use of pods (store.slim)."""


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


if __name__ == "__main__":
    print(table())
