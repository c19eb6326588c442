"""The documents say what the code and the measurements back."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RESULTS = ROOT / "benchmarks" / "results"


def test_every_test_the_docs_name_exists() -> None:
    defined = {
        match
        for path in (ROOT / "tests").rglob("test_*.py")
        for match in re.findall(r"^\s*(?:async )?def (test_\w+)\(", path.read_text(), re.M)
    }
    named = {(doc.name, name) for doc in DOCS for name in re.findall(r"`(test_\w+)`", doc.read_text())}
    assert {(doc, name) for doc, name in named if name not in defined} == set()


def test_readme_benchmark_figures_are_the_results_files() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    operator = json.loads((RESULTS / "operator-1000-final.json").read_text())
    assert (
        f"{operator['chutes']} Chutes to Ready in {operator['seconds_to_all_ready']} s, "
        f"{operator['peak_rss_mb']:.0f} MB RSS at peak, against the API server's floor of "
        f"{operator['floor_seconds_to_all_available']} s "
        f"(ratio {operator['floor_to_operator_ratio']};" in readme
    )
    assert (
        f"reconciling all {operator['chutes']} in {operator['restart_seconds_to_reconcile_all']} s with "
        f"{operator['writes_after_restart']:.0f} writes, p99 spec change to Deployment "
        f"{operator['spec_to_deployment_p99_seconds']} s" in readme
    )
    sidecar = json.loads((RESULTS / "sidecar.json").read_text())
    added = sidecar["fixed_rate"]["sidecar@1000"]["added_ms"]
    peak_mb = max(sidecar["sidecar_peak_rss_kb"], sidecar["sse_200_streams"]["sidecar_peak_rss_kb"]) / 1024
    assert (
        f"+{added['p50']:.2f} ms p50 / +{added['p99']:.2f} ms p99 at 1000 req/s, {peak_mb:.0f} MB" in readme
    )


def test_the_documented_minimum_kubernetes_is_the_charts() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "chute-operator" / "Chart.yaml").read_text())
    minimum = re.match(r">=(\d+\.\d+)", chart["kubeVersion"])
    assert minimum is not None
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    assert f"Kubernetes {minimum[1]} or newer" in deployment


def test_control_plane_figures_are_the_results_file() -> None:
    doc = (ROOT / "docs" / "control-plane.md").read_text()
    results = json.loads((RESULTS / "controlplane.json").read_text())["median"]
    assert f"| {results['start_seconds']:.1f} s (" in doc
    assert (
        f"| {results['rss_mb_total']:.0f} MiB: kube-apiserver {results['rss_mb']['kube-apiserver']:.0f},"
        in doc
    )


def test_autoscaling_figures_are_the_results_file() -> None:
    doc = " ".join((ROOT / "docs" / "autoscaling.md").read_text().split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    results = json.loads((RESULTS / "autoscaling.json").read_text())
    ready = results["load_start_to_second_replica_ready_s"]
    down = results["load_end_to_scale_down_s (shutdownAfterSeconds 60)"]
    assert f"| {ready['median']:.1f} s | {ready['min']:.1f} s | {ready['max']:.1f} s |" in doc
    assert f"| {down['median']:.1f} s | {down['min']:.1f} s | {down['max']:.1f} s |" in doc
    assert f"{len(results['runs'])} runs" in doc
    assert f"second replica Ready in {ready['median']:.1f} s median" in readme


REAL_NODE_AUTOSCALING_ROWS = (
    "load_start_to_hpa_decision_s",
    "load_start_to_second_replica_ready_s",
    "load_start_to_third_replica_ready_s",
    "load_start_to_hpa_wanting_more_than_max_s",
    "load_end_to_two_replicas_s",
    "load_end_to_one_replica_s",
)


def test_real_node_autoscaling_figures_are_the_results_file() -> None:
    doc = " ".join((ROOT / "docs" / "autoscaling.md").read_text().split())
    results = json.loads((RESULTS / "autoscaling-real-node.json").read_text())
    for row in REAL_NODE_AUTOSCALING_ROWS:
        figures = results[row]
        assert f"| {figures['median']:.1f} s | {figures['min']:.1f} s | {figures['max']:.1f} s |" in doc, row
    assert f"**{len(results['runs'])} runs**" in doc
    assert f"at most {results['most_replicas (maxInstances 3)']} replicas" in doc
    assert results["hpa_wanted_more_than_max_in_every_run"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    ready = results["load_start_to_second_replica_ready_s"]["median"]
    assert f"on the real node, real pods: {ready:.1f} s median" in readme
    assert f"({len(results['runs'])} runs, `benchmarks/results/autoscaling-real-node.json`)" in readme


def test_prometheus_adapter_figures_are_the_results_file() -> None:
    doc = " ".join((ROOT / "docs" / "autoscaling.md").read_text().split())
    results = json.loads((RESULTS / "autoscaling-prometheus-adapter.json").read_text())

    def figures(key: str) -> str:
        found = results[key]
        return f"{found['median']:.1f} s ({found['min']:.1f}-{found['max']:.1f} s)"

    assert f"| the HPA wants 2 replicas | {figures('load_start_to_hpa_decision_s')} |" in doc
    assert f"| the 2nd replica Ready | {figures('load_start_to_second_replica_ready_s')} |" in doc
    down = figures("load_end_to_scale_down_s (shutdownAfterSeconds 60)")
    assert f"| back to 1 replica (`shutdownAfterSeconds: 60`) | {down} |" in doc
    assert f"**{len(results['runs'])} runs**" in doc
    ready = results["load_start_to_second_replica_ready_s"]["median"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"prometheus-adapter instead: {ready:.1f} s median ({len(results['runs'])} runs," in readme
    # the rule that ran is the documented one
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    assert yaml.safe_dump(results["adapter_rule"]) == yaml.safe_dump(
        yaml.safe_load(
            deployment.split("### With prometheus-adapter instead", 1)[1]
            .split("```yaml\n")[1]
            .split("```")[0]
        )
    )


def test_image_build_figures_are_the_results_file() -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    drivers = json.loads((RESULTS / "image_build.json").read_text())["drivers"]
    for driver in ("overlay", "vfs"):
        measured = drivers[driver]
        first, rebuild = measured["first_build_seconds"], measured["rebuild_median_seconds"]
        assert f"| `{driver}` | {first:.0f} s | {rebuild:.0f} s (" in doc
        assert f"| {measured['buildah_storage_bytes_after'] / 1e9:.2f} GB |" in doc


def test_operator_scale_table_is_the_results_files() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from operator_table import apiserver_cpu_tables, ceiling_table, reconcile_cpu_table, table, usage_table

    doc = (ROOT / "docs" / "benchmarks" / "operator.md").read_text()
    assert table() in doc
    assert usage_table() in doc
    assert reconcile_cpu_table() in doc
    assert ceiling_table() in doc
    assert apiserver_cpu_tables() in doc


def test_scale_from_zero_breakdown_is_the_results_files() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale_to_zero_table import data_path, summary, table

    doc = (ROOT / "docs" / "scale-to-zero.md").read_text()
    assert table() in doc
    assert summary() in doc
    assert data_path() in doc
    now = json.loads((RESULTS / "scale-to-zero-real-node.json").read_text())
    added = now["added_beyond_load_s"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    measured = now["added_beyond_measured_load_s"]
    assert f"{added['median']:.2f} s median, {added['p95']:.2f} s p95 beyond an 8 s" in readme
    assert f"{measured['median']:.2f} s median, {measured['p95']:.2f} s p95 beyond the model's load" in readme
    words = " ".join(doc.split())
    assert f"median {measured['median']:.2f} s, p95 **{measured['p95']:.2f} s** beyond it" in words
    assert f"median {added['median']:.2f} s, p95 {added['p95']:.2f} s over {len(now['runs'])} runs" in words
    assert ("target is not met" in words) == (not added["target_met"])
    assert ("met against the model's load as the cluster measures it" in words) == measured["target_met"]


def test_the_chaos_doc_says_run_on_its_own_only_of_a_throttled_only_run() -> None:
    """A full run measures throttling after the other scenarios, each on a control plane of its own."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from chaos import _doc

    results = json.loads((RESULTS / "chaos.json").read_text())
    throttled = {**results["throttled"], "run_alone": False}
    assert "`--throttled-only`" not in _doc({**results, "throttled": throttled})
    alone = _doc({**results, "throttled": {**throttled, "run_alone": True}})
    assert f"Run on its own ({throttled['date']}, `--throttled-only`" in alone


def test_api_call_costs_are_the_results_file() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from api_client import table

    doc = (ROOT / "docs" / "benchmarks" / "operator.md").read_text()
    assert table(json.loads((RESULTS / "api-client.json").read_text())) in doc


def test_scale_to_zero_soak_doc_is_the_results_file() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale_to_zero_soak import DEFAULT_RESULTS, DOC, doc

    results = json.loads((RESULTS / DEFAULT_RESULTS).read_text())
    assert DOC.read_text() == doc(results)
    assert f"`docs/benchmarks/{DOC.name}`" in (ROOT / "docs" / "scale-to-zero.md").read_text()


def test_install_doc_and_figures_are_the_results_file() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from install import DOC, RESULTS, doc, summary

    results = json.loads(RESULTS.read_text())
    assert DOC.read_text() == doc(results)
    deployment = " ".join((ROOT / "docs" / "deployment.md").read_text().split())
    assert " ".join(summary(results).split()) in deployment


def test_demo_stage_figures_are_the_results_files() -> None:
    doc = " ".join((ROOT / "docs" / "deployment.md").read_text().split())
    run = json.loads((RESULTS / "demo-stages.json").read_text())
    assert run["completed"]
    for stage, seconds in run["stages_seconds"].items():
        assert f"| {stage} | {seconds:.1f} |" in doc, stage
    assert f"| **total** | **{run['total_seconds']:.1f}** |" in doc
    pruned = json.loads((RESULTS / "demo-stages-earlier.json").read_text())
    published = pruned["stages_seconds"]["image and chart published to the local registry"]
    assert f"and {published:.1f} s in the other run" in doc
    rerun = json.loads((RESULTS / "demo-stages-rerun.json").read_text())
    assert f"({rerun['total_seconds']:.1f} s in one run," in doc
    fresh = json.loads((RESULTS / "fresh-binaries.json").read_text())
    waited = run["stages_seconds"].get("waiting for another local cluster's real node", 0.0)
    demo = run["total_seconds"] - waited
    assert f"| {fresh['total_seconds']:.1f} | `benchmarks/results/fresh-binaries.json`" in doc
    assert f"| {demo:.1f} | `benchmarks/results/demo-stages.json` |" in doc
    total = fresh["total_seconds"] + 300 + demo
    assert f"| **sum** | **{total:.0f}** |" in doc
    assert f"That is {total / 60:.1f} minutes" in doc


def test_the_fleet_tables_are_the_results_files() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fleet_table import activator_memory_table, etcd_table, fleet_table, scraper_table, wake_table

    doc = (ROOT / "docs" / "benchmarks" / "fleet.md").read_text()
    tables = (scraper_table(), fleet_table(), etcd_table(), etcd_table("fleet-2000.json"), wake_table())
    for part in (*tables, activator_memory_table()):
        assert part in doc
