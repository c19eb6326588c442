"""The PrometheusRule (promtool: syntax and alert behaviour) and the Grafana dashboard (JSON, metrics)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, Helm, find, one

OPERATOR_METRICS = {
    "chute_operator_reconciles_total",
    "chute_operator_chutes",
    "chute_operator_chute_ready",
    "chute_operator_api_writes_total",
    "chute_operator_api_errors_total",
    "chute_operator_leader",
    "chute_operator_queue_depth",
}
SIDECAR_METRICS = {
    "chute_requests_total",
    "chute_requests_in_flight",
    "chute_concurrency_limit",
    "chute_utilization_ratio",
    "chute_requests_rejected_total",
    "chute_upstream_errors_total",
    "chute_model_up",
    "chute_model_started",
    "chute_last_request_timestamp_seconds",
    "chute_prompt_tokens_total",
    "chute_completion_tokens_total",
    "chute_draining",
}
HISTOGRAMS = {
    "chute_operator_reconcile_duration_seconds",
    "chute_request_duration_seconds",
    "chute_time_to_first_byte_seconds",
}
KUBE_STATE_METRICS = {"kube_pod_container_status_restarts_total", "kube_deployment_status_replicas_available"}
KNOWN_METRICS = (
    OPERATOR_METRICS
    | SIDECAR_METRICS
    | KUBE_STATE_METRICS
    | {f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
PROMQL_WORDS |= {"offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL (or Grafana label_values) expression."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"'(?:[^'\\]|\\.)*'", "''", expr)
    expr = re.sub(r"\blabel_values\(([^,]*),\s*\w+\s*\)", r"(\1)", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def test_metric_name_parser() -> None:
    assert metric_names(
        'sum by (service) (rate(foo_total{code="429", a=~"$x"}[$__rate_interval]))'
        " / on (pod) group_left (s) bar"
    ) == {"foo_total", "bar"}
    assert metric_names("histogram_quantile(0.99, sum(rate(x_bucket[5m])) by (le)) > 0.5") == {"x_bucket"}
    assert metric_names('label_values(chute_model_up{namespace=~"$namespace"}, service)') == {
        "chute_model_up"
    }
    assert metric_names("(max(up) or vector(0)) < 1 and unknown_metric offset 5m") == {"up", "unknown_metric"}


# -- PrometheusRule ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rule_spec(helm: Helm) -> dict[str, Any]:
    rule = one(helm.template(sets=("prometheusRule.enabled=true",)), "PrometheusRule")
    return dict(rule["spec"])


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (Debian package prometheus; scripts/setup installs it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def alerts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule}


def test_rules_cover_the_required_alerts(rule_spec: dict[str, Any]) -> None:
    names = set(alerts(rule_spec))
    assert {
        "ChuteNotReady",
        "ChuteOperatorReconcileErrors",
        "ChuteThrottled",
        "ChuteModelRestarting",
    } <= names


def test_rules_use_only_known_metrics(rule_spec: dict[str, Any]) -> None:
    used: set[str] = set()
    for name, rule in alerts(rule_spec).items():
        names = metric_names(rule["expr"])
        assert names, name
        assert names <= KNOWN_METRICS, f"{name}: unknown metrics {names - KNOWN_METRICS}"
        used |= names
    assert {
        "chute_operator_chute_ready",
        "chute_requests_total",
        "kube_pod_container_status_restarts_total",
    } <= used


def test_kube_state_metrics_alerts_say_so(rule_spec: dict[str, Any]) -> None:
    for name, rule in alerts(rule_spec).items():
        if metric_names(rule["expr"]) & KUBE_STATE_METRICS:
            assert "kube-state-metrics" in rule["annotations"]["description"], name


def test_promtool_check_rules(rule_spec: dict[str, Any], promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_spec))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(rule_spec))} rules found" in result.stdout


RESTARTS = 'kube_pod_container_status_restarts_total{{namespace="ns", pod="{pod}", container="model"}}'
SERIES = 'chute_requests_total{{namespace="ns", service="{service}", pod="{service}-1", code="{code}"}}'
ALERT_TESTS = [
    {
        "interval": "1m",
        "input_series": [
            # "chat" answers a third of its requests with 429; "calm" none.
            {"series": SERIES.format(service="chat", code="200"), "values": "0+60x40"},
            {"series": SERIES.format(service="chat", code="429"), "values": "0+30x40"},
            {"series": SERIES.format(service="calm", code="200"), "values": "0+60x40"},
            {"series": SERIES.format(service="calm", code="429"), "values": "0x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "ChuteThrottled", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "ChuteThrottled",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "ns", "service": "chat"}}],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {
                "series": "chute_operator_chute_ready"
                '{chute_namespace="ns", chute="stuck", reason="Unschedulable"}',
                "values": "0x40",
            },
            {
                "series": 'chute_operator_chute_ready{chute_namespace="ns", chute="fine", reason=""}',
                "values": "1x40",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": "ChuteNotReady", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "ChuteNotReady",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "chute_namespace": "ns",
                            "chute": "stuck",
                            "reason": "Unschedulable",
                        }
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # A Chute's model restarting every 5 minutes, and a non-Chute container also named model.
            {"series": RESTARTS.format(pod="chat-7d9-x"), "values": "0+0.2x40"},
            {"series": 'chute_model_up{namespace="ns", pod="chat-7d9-x", service="chat"}', "values": "0x40"},
            {"series": RESTARTS.format(pod="other"), "values": "0+1x40"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "35m",
                "alertname": "ChuteModelRestarting",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "namespace": "ns",
                            "pod": "chat-7d9-x",
                            "container": "model",
                            "service": "chat",
                        }
                    }
                ],
            }
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {"series": 'chute_operator_reconciles_total{result="success"}', "values": "0+10x40"},
            {"series": 'chute_operator_reconciles_total{result="error"}', "values": "0+5x40"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "30m",
                "alertname": "ChuteOperatorReconcileErrors",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            },
        ],
    },
]


def _drop_annotations(spec: dict[str, Any]) -> dict[str, Any]:
    """The rules without annotations, so the unit tests compare labels only."""
    groups = []
    for group in spec["groups"]:
        rules = [{k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]]
        groups.append({**group, "rules": rules})
    return {"groups": groups}


def test_promtool_alerts_fire_when_they_should(
    rule_spec: dict[str, Any], promtool: str, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_drop_annotations(rule_spec)))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": ALERT_TESTS}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# -- Grafana dashboard ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard_configmap(helm: Helm) -> dict[str, Any]:
    objects = helm.template(sets=("grafanaDashboard.enabled=true",))
    maps = [o for o in find(objects, "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(maps) == 1
    return maps[0]


@pytest.fixture(scope="module")
def dashboard(dashboard_configmap: dict[str, Any]) -> dict[str, Any]:
    (key,) = dashboard_configmap["data"]
    assert key.endswith(".json")
    parsed: dict[str, Any] = json.loads(dashboard_configmap["data"][key])
    return parsed


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p.get("type") != "row"]


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_dashboard_file_is_the_chart_file(dashboard: dict[str, Any]) -> None:
    assert dashboard == json.loads((CHART / "files" / "dashboards" / "chutes.json").read_text())
    assert dashboard["uid"]
    assert dashboard["title"]


def test_dashboard_uses_only_known_metrics(dashboard: dict[str, Any]) -> None:
    exprs = expressions(dashboard)
    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= KNOWN_METRICS, f"{expr}: unknown metrics {names - KNOWN_METRICS}"


def test_dashboard_panels_have_unique_ids_and_targets(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def _panel_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [" ".join(t["expr"] for t in p["targets"]) for p in panels(dashboard)]


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("utilization", r"chute_utilization_ratio"),
        ("requests by code", r"by \([^)]*\bcode\b[^)]*\) \(rate\(chute_requests_total"),
        ("latency p50", r"histogram_quantile\(0\.5, [^;]*chute_request_duration_seconds_bucket"),
        ("latency p99", r"histogram_quantile\(0\.99, [^;]*chute_request_duration_seconds_bucket"),
        ("time to first byte", r"chute_time_to_first_byte_seconds_bucket"),
        ("429s", r'chute_requests_total\{code="429"'),
        (
            "replicas per Chute",
            r"kube_deployment_status_replicas_available|count by \([^)]*\) \(chute_model_up",
        ),
        ("operator reconciles", r"chute_operator_reconciles_total"),
    ],
)
def test_dashboard_has_panel_for(dashboard: dict[str, Any], what: str, pattern: str) -> None:
    assert any(re.search(pattern, exprs) for exprs in _panel_exprs(dashboard)), what
