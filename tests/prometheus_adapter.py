"""prometheus-adapter v0.12.0 and Debian's Prometheus on loopback, registered with a local control
plane's kube-apiserver: shared by benchmarks/autoscaling_prometheus.py and
tests/integration/test_metrics_api_coexist.py.

The adapter is built from the Go module proxy into ~/.cache/chute-operator/ (never the repository) on
first use (:func:`ensure_adapter`). Its APIServices point at an ExternalName Service whose name is
127.0.0.1, so the kube-apiserver's aggregator dials loopback only.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster.pki import _issue, _make_ca
from tests.kube_helpers import apply, condition, get

ADAPTER_VERSION = "v0.12.0"
ADAPTER = Path.home() / ".cache" / "chute-operator" / f"prometheus-adapter-{ADAPTER_VERSION}" / "adapter"
PROMETHEUS = Path("/usr/bin/prometheus")
SERVICE = "prometheus-adapter"
VERSIONS = ("v1beta1", "v1beta2")
"""What the benchmark registers (as the adapter's own example manifests); its Helm chart: v1beta1 only."""


def build_adapter() -> None:
    """prometheus-adapter from the Go module proxy into ~/.cache/chute-operator/ (never the repository).

    ``go install sigs.k8s.io/prometheus-adapter/cmd/adapter@v0.12.0`` fails here: the proxy refuses the
    module's version list (403), which ``go install`` reads for deprecations; the exact version is
    served. So: download that version, copy it out of the read-only module cache, build ./cmd/adapter."""
    download = subprocess.run(
        ["go", "mod", "download", "-json", f"sigs.k8s.io/prometheus-adapter@{ADAPTER_VERSION}"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    source = Path(json.loads(download.stdout)["Dir"])
    with tempfile.TemporaryDirectory(prefix="prometheus-adapter-") as scratch:
        work = Path(scratch) / "src"
        shutil.copytree(source, work)
        for path in [work, *work.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        ADAPTER.parent.mkdir(parents=True, exist_ok=True)
        partial = ADAPTER.with_name("adapter.partial")
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
        subprocess.run(
            ["go", "build", "-o", str(partial), "./cmd/adapter"], cwd=work, env=env, check=True, timeout=1800
        )
        partial.replace(ADAPTER)  # never half a binary in the cache


def ensure_adapter() -> Path:
    """The adapter's binary, built first if the cache has none."""
    if not ADAPTER.exists():
        build_adapter()
    return ADAPTER


class Processes:
    """Prometheus and prometheus-adapter on loopback, their logs in ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: list[str]) -> None:
        log = (self.work / f"{name}.log").open("ab")
        self.running.append((name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))

    def check(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                tail = (self.work / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited {process.returncode}:\n{tail}")

    def stop(self) -> None:
        for _, process in self.running:
            process.terminate()
        for _, process in self.running:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_prometheus(processes: Processes, config: dict[str, Any], port: int) -> None:
    """Debian's Prometheus on 127.0.0.1:``port`` with ``config``, its data in the processes' directory."""
    work = processes.work
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    processes.start(
        "prometheus",
        [str(PROMETHEUS), f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
    )  # fmt: skip


def start_adapter(
    processes: Processes,
    cp: Any,
    namespace: str,
    config: dict[str, Any],
    prometheus_port: int,
    port: int,
    relist: str,
) -> Path:
    """prometheus-adapter on 127.0.0.1:``port`` with the rules ``config``, serving a certificate for
    its Service in ``namespace``; the CA's certificate file (the APIService's caBundle)."""
    work = processes.work
    (work / "adapter.yaml").write_text(yaml.safe_dump(config))
    pki = work / "pki"
    pki.mkdir()
    ca = _make_ca(pki, "adapter-ca", "prometheus-adapter-test-ca")
    serving = _issue(pki, ca, "adapter", SERVICE, server_names=(f"DNS:{SERVICE}.{namespace}.svc",))
    kubeconfig = str(cp.kubeconfig)
    processes.start(
        "adapter",
        [str(ensure_adapter()), f"--prometheus-url=http://127.0.0.1:{prometheus_port}/",
         f"--config={work / 'adapter.yaml'}", f"--metrics-relist-interval={relist}",
         "--bind-address=127.0.0.1", f"--secure-port={port}",
         f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
         f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
         f"--authorization-kubeconfig={kubeconfig}", "--v=2"],
    )  # fmt: skip
    return ca.cert


def prometheus_value(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(json.loads(response.read())["data"]["result"])


def register_adapter(
    cp: Any, namespace: str, port: int, ca_cert: Path, versions: tuple[str, ...] = VERSIONS
) -> None:
    """The adapter's ExternalName Service (127.0.0.1) and its ``custom.metrics.k8s.io`` APIServices."""
    apply(
        cp,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
        },
        namespace,
    )
    for version in versions:
        apiservice = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.custom.metrics.k8s.io"},
            "spec": {
                "group": "custom.metrics.k8s.io",
                "version": version,
                "service": {"name": SERVICE, "namespace": namespace, "port": port},
                "caBundle": base64.b64encode(ca_cert.read_bytes()).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 200 if version == "v1beta2" else 100,
            },
        }
        cp.kubectl("apply", "-f", "-", input=json.dumps(apiservice))


def available(cp: Any, processes: Processes, apiservice: str) -> bool:
    processes.check()
    return condition(get(cp, "apiservice", apiservice, ""), "Available").get("status") == "True"
