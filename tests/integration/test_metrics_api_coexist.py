"""The operator's metrics API beside a real prometheus-adapter (v0.12.0) on the local control plane.

The adapter registers ``v1beta1.custom.metrics.k8s.io`` only, as its Helm chart does; a Deployment
that is no Chute scales on a Prometheus metric through it. Once the operator's
``v1beta2.custom.metrics.k8s.io`` is registered, the HPA controller asks v1beta2 (the operator) for
every metric: the operator answers the Chutes' and forwards the rest to the adapter, so that HPA
keeps reading and scaling. Where the adapter registers v1beta2 too, ``helm install`` stops and the
operator leaves that APIService alone.

SIMULATION: the Deployment's pods run on kwok nodes; a loopback exporter stands in for them, one
gauge per pod with its ``namespace`` and ``pod`` labels, scraped by Debian's Prometheus on 127.0.0.1.
The Chute's pod is read through a loopback sidecar (tests/metrics_api_harness.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.chart.helm import CHART, Helm
from tests.kube_helpers import apply, condition, eventually, get, items
from tests.metrics_api_harness import (
    APISERVICE,
    SERVICE,
    LoopbackSidecar,
    autoscaled_chute,
    metrics_api_on_loopback,
    raw,
)
from tests.operator_fixtures import OperatorProcess, _free_port
from tests.prometheus_adapter import (
    PROMETHEUS,
    Processes,
    available,
    prometheus_value,
    register_adapter,
    start_adapter,
    start_prometheus,
)
from tests.prometheus_adapter import SERVICE as ADAPTER_SERVICE

from chute_devcluster.binaries import ensure_binaries, toolset

pytestmark = [
    pytest.mark.integration,
    # The first run builds prometheus-adapter into ~/.cache/chute-operator/ (minutes on 2 cores).
    pytest.mark.timeout(1500),
    pytest.mark.skipif(not PROMETHEUS.exists(), reason=f"{PROMETHEUS} missing (apt-get install prometheus)"),
]

METRIC = "queue_depth"
TARGET = 10
"""The HPA's averageValue: a value of 25 on one pod wants 3 replicas."""
V1BETA1 = "v1beta1.custom.metrics.k8s.io"
RULES = {
    "rules": [
        {
            "seriesQuery": f'{METRIC}{{namespace!="",pod!=""}}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": METRIC, "as": METRIC},
            "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        }
    ]
}


@dataclass
class Exporter:
    """``queue_depth{namespace, pod}`` = ``value`` for every pod of ``app=web`` in ``namespace``, on
    127.0.0.1; the pods are listed every second (bounded: 20 minutes at most)."""

    cp: Any
    namespace: str = ""
    value: float = 5.0
    pods: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = [f"# TYPE {METRIC} gauge"]
                ns = exporter.namespace
                lines += [
                    f'{METRIC}{{namespace="{ns}",pod="{pod}"}} {exporter.value}' for pod in exporter.pods
                ]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._list_pods, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _list_pods(self) -> None:
        deadline = time.monotonic() + 1200
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.namespace:
                self.pods = [p["metadata"]["name"] for p in items(self.cp, "pods", self.namespace, "app=web")]
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)


@dataclass
class AdapterStack:
    namespace: str
    """Where the adapter's Service is (its APIServices name it)."""
    processes: Processes
    exporter: Exporter
    port: int
    ca_cert: Path
    prometheus_port: int


def _own_apiservice(cp: Any, name: str, namespace: str) -> bool:
    found = get(cp, "apiservice", name, "") or {}
    service = (found.get("spec") or {}).get("service") or {}
    return (service.get("namespace"), service.get("name")) == (namespace, ADAPTER_SERVICE)


@pytest.fixture(scope="module")
def adapter_stack(control_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdapterStack]:
    """Prometheus scraping the exporter, prometheus-adapter registered as v1beta1 only (as its Helm
    chart does) and Available; every APIService naming it removed afterwards (an unavailable one
    would break discovery for every later test)."""
    cp = control_plane
    namespace = "coexist-adapter"
    cp.kubectl("create", "namespace", namespace)
    work = tmp_path_factory.mktemp("adapter")
    processes = Processes(work)
    exporter = Exporter(cp)
    try:
        prometheus_port, adapter_port = _free_port(), _free_port()
        scrape = {
            "job_name": "pods",
            "scrape_interval": "1s",
            "honor_labels": True,
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
        }
        config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape]}
        start_prometheus(processes, config, prometheus_port)
        ca_cert = start_adapter(processes, cp, namespace, RULES, prometheus_port, adapter_port, "5s")
        register_adapter(cp, namespace, adapter_port, ca_cert, versions=("v1beta1",))
        eventually(
            lambda: available(cp, processes, V1BETA1), what="the adapter's v1beta1 Available", timeout=180
        )
        yield AdapterStack(namespace, processes, exporter, adapter_port, ca_cert, prometheus_port)
    finally:
        for name in (V1BETA1, APISERVICE):
            if _own_apiservice(cp, name, namespace):
                cp.kubectl("delete", "apiservice", name, "--ignore-not-found", check=False)
        processes.stop()
        exporter.stop()
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def web(namespace: str) -> list[dict[str, Any]]:
    """A Deployment that is no Chute, on simulated CPU nodes, and its HPA on the Prometheus metric."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"type": "kwok"},
                    "containers": [{"name": "web", "image": "example.com/web:1"}],
                },
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(TARGET)},
                    },
                }
            ],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
        },
    }
    return [deployment, hpa]


def reads_metric(cp: Any, name: str, namespace: str) -> dict[str, Any] | None:
    """The HPA, once it reads its metric (ScalingActive and a current value)."""
    hpa = get(cp, "hpa", name, namespace) or {}
    active = condition(hpa, "ScalingActive").get("status") == "True"
    return hpa if active and (hpa.get("status") or {}).get("currentMetrics") else None


def test_a_non_chute_hpa_keeps_scaling_on_the_adapters_metric_once_the_operators_v1beta2_is_registered(
    control_plane: Any,
    chute_crd: Path,
    namespace: str,
    tmp_path: Path,
    adapter_stack: AdapterStack,
    sidecar: LoopbackSidecar,
) -> None:
    cp, stack = control_plane, adapter_stack
    stack.exporter.namespace, stack.exporter.value = namespace, 5.0
    for manifest in web(namespace):
        apply(cp, manifest, namespace)
    eventually(
        lambda: prometheus_value(stack.prometheus_port, f'{METRIC}{{namespace="{namespace}"}}'),
        what="Prometheus scraping the exporter",
        timeout=60,
    )
    # Before the operator: the HPA reads the metric from the adapter's v1beta1.
    eventually(
        lambda: reads_metric(cp, "web", namespace), what="the web HPA reading through v1beta1", timeout=180
    )

    with metrics_api_on_loopback(cp, namespace, tmp_path, CHUTE_OPERATOR_OPERATOR_NAMESPACE=namespace) as (
        operator,
        overrides,
    ):
        eventually(
            lambda: condition(get(cp, "apiservice", APISERVICE, ""), "Available").get("status") == "True",
            what="the operator's v1beta2 Available",
            timeout=60,
        )

        # The HPA controller now asks v1beta2, the operator, which forwards to the adapter (without
        # forwarding, the HPA quotes the operator's 404 and stops scaling: the bug this is about).
        def asks_the_operator() -> str | None:
            if operator.metric("chute_operator_metrics_api_forwarded_total", result="ok") > 0:
                return "forwarded"
            active = condition(get(cp, "hpa", "web", namespace), "ScalingActive")
            return (
                f"{active.get('reason')}: {active.get('message')}"
                if active.get("status") == "False"
                else None
            )

        switched = eventually(
            asks_the_operator, what="the web HPA asking the operator's v1beta2", timeout=120
        )
        assert switched == "forwarded", f"the web HPA cannot read {METRIC}: {switched}"
        path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/{METRIC}"
        path += "?labelSelector=app%3Dweb"
        code, listed = raw(cp, path)
        assert code == 0, listed
        assert listed["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
        assert {(i["metric"]["name"], i["value"]) for i in listed["items"]} == {(METRIC, "5")}

        stack.exporter.value = 25.0  # 25 on one pod, target 10: 3 replicas
        eventually(
            lambda: (
                ((get(cp, "deployment", "web", namespace) or {}).get("spec") or {}).get("replicas", 0) >= 2
            ),
            what="the web Deployment scaled up through the forwarded metric",
            timeout=120,
        )
        hpa = eventually(lambda: reads_metric(cp, "web", namespace), what="the web HPA reading", timeout=60)
        assert hpa["status"]["currentMetrics"][0]["pods"]["metric"]["name"] == METRIC
        assert operator.metric("chute_operator_metrics_api_forwarded_total", result="failed") == 0

        # A Chute's HPA still reads its metric from the operator itself.
        apply(cp, autoscaled_chute("scaler"), namespace)
        pods = eventually(
            lambda: [
                p for p in items(cp, "pods", namespace, "chutes.ai/chute=scaler") if p["status"].get("podIP")
            ],
            what="the Chute's pod",
        )
        first = pods[0]["metadata"]["name"]
        overrides.write_text(json.dumps({f"{namespace}/{first}": f"127.0.0.1:{sidecar.metrics_port}"}))
        chute_hpa = eventually(
            lambda: reads_metric(cp, "scaler", namespace), what="the Chute's HPA reading", timeout=120
        )
        assert chute_hpa["status"]["currentMetrics"][0]["pods"]["metric"]["name"] == "chute_utilization_ratio"


def test_where_the_adapter_registers_v1beta2_too_the_chart_stops_and_the_operator_leaves_it_alone(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path, adapter_stack: AdapterStack
) -> None:
    cp, stack = control_plane, adapter_stack
    register_adapter(cp, stack.namespace, stack.port, stack.ca_cert, versions=("v1beta2",))
    try:
        eventually(
            lambda: available(cp, stack.processes, APISERVICE),
            what="the adapter's v1beta2 Available",
            timeout=120,
        )
        binary = toolset().helm
        helm = Helm(binary if binary.exists() else ensure_binaries().helm, tmp_path / "helm", cp.kubeconfig)
        refused = helm.run("install", "co", str(CHART), "-n", namespace, "--dry-run=server", check=False)
        assert refused.returncode != 0
        message = " ".join(refused.stderr.split())
        assert f"names Service {stack.namespace}/{ADAPTER_SERVICE}" in message, message
        assert "metricsApi.enabled=false" in message
        assert "remove that adapter's v1beta2.custom.metrics.k8s.io APIService" in message
        allowed = helm.run(
            "install", "co", str(CHART), "-n", namespace, "--dry-run=server",
            "--set", "metricsApi.enabled=false", check=False,
        )  # fmt: skip
        assert "v1beta2.custom.metrics.k8s.io already exists" not in allowed.stderr

        # The operator, with its own certificate (it would write its APIService's caBundle), warns and
        # writes nothing to the adapter's.
        before = get(cp, "apiservice", APISERVICE, "") or {}
        operator = OperatorProcess(
            cp.kubeconfig,
            tmp_path,
            "coexist-rival",
            (namespace,),
            CHUTE_OPERATOR_LEASE_NAME="coexist-rival",
            CHUTE_OPERATOR_METRICS_API="true",
            CHUTE_OPERATOR_METRICS_API_PORT=str(_free_port()),
            CHUTE_OPERATOR_METRICS_API_BIND_ADDRESS="127.0.0.1",
            CHUTE_OPERATOR_METRICS_API_SERVICE=SERVICE,
            CHUTE_OPERATOR_METRICS_API_CERT_SECRET="chute-operator-metrics-api-tls",
            CHUTE_OPERATOR_OPERATOR_NAMESPACE=namespace,
        ).start()
        try:
            eventually(
                lambda: f"names Service {stack.namespace}/{ADAPTER_SERVICE}" in operator.log_path.read_text(),
                what="the operator's warning",
                timeout=60,
            )
            eventually(
                lambda: get(cp, "secret", "chute-operator-metrics-api-tls", namespace),
                what="the operator's certificate made",
                timeout=60,
            )
        finally:
            operator.stop()
        log = operator.log_path.read_text()
        assert "metricsApi.enabled=false" in log
        after = get(cp, "apiservice", APISERVICE, "") or {}
        assert after["spec"] == before["spec"]
        managers = {entry.get("manager") for entry in after["metadata"].get("managedFields") or []}
        assert "chute-operator-metrics-api" not in managers
    finally:
        if _own_apiservice(cp, APISERVICE, stack.namespace):
            cp.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
