"""The demo's pure parts: the chart's values for the real node, the helm line, the real Chute it
applies, its flags, and the report of what each stage cost."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from chute_devcluster.chart_install import GPU_TOLERATION, install_command, values
from chute_devcluster.demo import build_parser
from chute_devcluster.demo_real import SCALING, real_chute
from chute_devcluster.demo_stages import WAITED, StageClock, write_report
from chute_operator.api.chute import Chute
from chute_operator.api.spec import ChuteSpec

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "charts" / "chute-operator" / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((ROOT / "charts" / "chute-operator" / "values.yaml").read_text())


def _merged(base: dict, override: dict) -> dict:  # type: ignore[type-arg]
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and key in base else value
    return merged


@pytest.mark.parametrize("digest", ["", "sha256:" + "a" * 64])
def test_the_real_node_values_pass_the_charts_schema(digest: str) -> None:
    chart_values = values("chute-real-0", image_digest=digest)
    jsonschema.validate(_merged(DEFAULTS, chart_values), SCHEMA)
    assert chart_values["replicaCount"] == 2
    assert chart_values["nodeSelector"] == {"kubernetes.io/hostname": "chute-real-0"}
    assert chart_values["tolerations"] == [GPU_TOLERATION]
    assert chart_values["metricsApi"]["enabled"]
    assert chart_values["activator"]["enabled"]
    assert chart_values["watchNamespaces"] == []
    assert chart_values["image"].get("digest", "") == digest


def test_the_values_can_narrow_the_watched_namespaces() -> None:
    assert values("node", ["t-ns"])["watchNamespaces"] == ["t-ns"]


def test_helm_installs_then_upgrades_the_published_chart(tmp_path: Path) -> None:
    published = {"chart": "oci://127.0.0.1:5000/charts/chute-operator", "version": "0.1.0"}
    first = install_command(published, tmp_path / "values.yaml", upgrade=False)
    again = install_command(published, tmp_path / "values.yaml", upgrade=True)
    assert first[:5] == ["install", "chute-operator", published["chart"], "--version", "0.1.0"]
    assert again[0] == "upgrade"
    assert again[1:] == first[1:]
    assert "--plain-http" in first
    assert first[first.index("-n") + 1] == "chute-system"


def test_the_real_chute_scales_between_zero_and_three_after_the_shortest_idle_window() -> None:
    chute = Chute.model_validate(real_chute("127.0.0.1:5000/chute-operator:0.1.0@sha256:" + "b" * 64, True))
    shortest = ChuteSpec.model_fields["shutdown_after_seconds"].metadata[0].ge
    assert SCALING["shutdownAfterSeconds"] == shortest == chute.spec.shutdown_after_seconds
    assert (chute.spec.min_instances, chute.spec.max_instances) == (0, 3)
    assert "minInstances" not in real_chute("image:1")["spec"]


def test_the_demo_flags() -> None:
    args = build_parser().parse_args(["--host-operator", "--no-real-node", "--results", "r.json"])
    assert args.host_operator
    assert args.no_real_node
    assert args.results == Path("r.json")
    defaults = build_parser().parse_args([])
    assert not defaults.host_operator
    assert not defaults.no_real_node
    assert defaults.results is None


def test_each_stage_costs_the_time_since_the_one_before(tmp_path: Path) -> None:
    ticks = iter([100.0, 112.34, 112.5, 190.0])
    clock = StageClock(clock=lambda: next(ticks))
    assert clock.done("control plane up") == 12.3
    assert clock.done("helm install") == 0.2
    assert clock.done("to zero") == 77.5
    assert clock.total() == 90.0
    assert clock.table().splitlines()[-1].split() == ["total", "90.0", "s"]
    report = clock.report(mode="chart in pods")
    assert report["stages_seconds"] == {"control plane up": 12.3, "helm install": 0.2, "to zero": 77.5}
    assert report["total_seconds"] == 90.0
    assert report["mode"] == "chart in pods"
    paths = [tmp_path / "a.json", tmp_path / "deeper" / "b.json"]
    write_report(report, *paths)
    assert [json.loads(path.read_text()) for path in paths] == [report, report]


def test_the_wait_for_another_clusters_real_node_is_a_stage_of_its_own() -> None:
    ticks = iter([0.0, 250.0])
    clock = StageClock(clock=lambda: next(ticks))
    assert clock.done("control plane up", waited=230.04) == 20.0
    assert clock.stages == [(WAITED, 230.0), ("control plane up", 20.0)]
    assert clock.total() == 250.0
