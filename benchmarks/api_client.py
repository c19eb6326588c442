"""The operator's CPU per API call: lightkube (over httpx) against the operator's transport (aiohttp).

The same requests, the same credentials (a client certificate), the same local kube-apiserver, 16
at a time as the reconcile workers send them: N status patches of a Chute, N GETs of a missing
Service, N Events, N server-side applies of a Service. The figure is this process's CPU time per call
(``time.process_time``): the client's side only, JSON encoding and decoding included. Beside it,
the CPU the API server and etcd spent per call of the transport's run (their processes found by
name: run on a quiet machine).

Run: .venv/bin/python benchmarks/api_client.py [--calls 1000]
Writes benchmarks/results/api-client.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Event, Service
from lightkube.types import PatchType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from operator_scale import process_cpu  # noqa: E402
from tests.chutes import cpu_chute  # noqa: E402

from chute_devcluster.controlplane import ControlPlane  # noqa: E402
from chute_operator.kube import KubeApi  # noqa: E402

NAMESPACE = "bench"
CONCURRENCY = 16
SERVER_PROCESSES = ("kube-apiserver", "etcd")
Chute = create_namespaced_resource("chutes.ai", "v1alpha1", "Chute", "chutes")
STATUS = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": kind,
            "status": "False",
            "reason": "NoReplicasReady",
            "message": "no replica is ready yet",
            "lastTransitionTime": "2026-12-04T10:00:00Z",
        }
        for kind in ("Ready", "Available", "Progressing", "Degraded")
    ],
}


def _service(index: int, chute: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A Service for the Chute, new on each call with another prefix (every apply creates one)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{prefix}-{index:04d}",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "chute-operator"},
            "ownerReferences": [
                {
                    "apiVersion": "chutes.ai/v1alpha1",
                    "kind": "Chute",
                    "name": chute["metadata"]["name"],
                    "uid": chute["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "selector": {"chutes.ai/chute": f"c-{index:04d}"},
            "ports": [{"port": 80, "targetPort": 8000}],
        },
    }


def _server_cpu() -> float:
    """CPU seconds of kube-apiserver and etcd so far."""
    return sum(process_cpu(SERVER_PROCESSES).values())


async def _cpu_per_call(calls: int, call: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """This process's CPU milliseconds per call, and the API server's and etcd's, ``calls`` of
    them, CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            await call(index)

    started, server = time.process_time(), _server_cpu()
    await asyncio.gather(*(one(i) for i in range(calls)))
    client_ms = 1000 * (time.process_time() - started) / calls
    return round(client_ms, 3), round(1000 * (_server_cpu() - server) / calls, 2)


async def _measure(kubeconfig: Path, calls: int) -> dict[str, dict[str, float]]:
    client = AsyncClient(KubeConfig.from_file(str(kubeconfig)), field_manager="bench")
    api = KubeApi(client, "bench", "bench", "bench")
    chutes = [
        (await client.create(Chute.from_dict(cpu_chute(f"c-{i:04d}", {"namespace": NAMESPACE})))).to_dict()
        for i in range(calls)
    ]

    def event(index: int) -> Event:
        meta = chutes[index]["metadata"]
        involved = {"apiVersion": "chutes.ai/v1alpha1", "kind": "Chute", "name": meta["name"]}
        body = {"metadata": {"generateName": "c.", "namespace": NAMESPACE}, "reason": "Ready"}
        return cast(Event, Event.from_dict({**body, "involvedObject": {**involved, "namespace": NAMESPACE}}))

    lightkube: dict[str, Callable[[int], Awaitable[Any]]] = {
        "status patch": lambda i: client.patch(
            Chute.Status, f"c-{i:04d}", {"status": STATUS}, namespace=NAMESPACE, patch_type=PatchType.MERGE
        ),
        "GET of a missing object": lambda i: _missing(client.get(Service, f"none-{i}", namespace=NAMESPACE)),
        "Event": lambda i: client.create(event(i)),
        "server-side apply": lambda i: client.patch(
            Service,
            f"lightkube-{i:04d}",
            _service(i, chutes[i], "lightkube"),
            namespace=NAMESPACE,
            patch_type=PatchType.APPLY,
            force=True,
        ),
    }
    transport: dict[str, Callable[[int], Awaitable[Any]]] = {
        "status patch": lambda i: api.patch_status(NAMESPACE, f"c-{i:04d}", STATUS),
        "GET of a missing object": lambda i: api.get("Service", NAMESPACE, f"none-{i}"),
        "Event": lambda i: api.event(chutes[i], "Normal", "Ready", "ready"),
        "server-side apply": lambda i: api.apply(_service(i, chutes[i], "transport")),
    }
    results: dict[str, dict[str, float]] = {}
    for name in lightkube:
        lightkube_ms, _ = await _cpu_per_call(calls, lightkube[name])
        transport_ms, server_ms = await _cpu_per_call(calls, transport[name])
        results[name] = {
            "lightkube_ms": lightkube_ms,
            "transport_ms": transport_ms,
            "api_server_and_etcd_ms": server_ms,
        }
    await api.close()
    return results


async def _missing(call: Awaitable[Any]) -> None:
    try:
        await call
    except Exception as error:  # lightkube's ApiError: the 404 is the point
        if getattr(getattr(error, "status", None), "code", None) != 404:
            raise


def table(results: dict[str, Any]) -> str:
    """The Markdown table of docs/benchmarks/operator.md."""
    rows = [
        "| call | operator CPU: lightkube (httpx) | operator CPU: its transport (aiohttp) "
        "| kube-apiserver + etcd CPU |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in results["client_cpu_ms_per_call"].items():
        rows.append(
            f"| {name} | {row['lightkube_ms']:.2f} ms | {row['transport_ms']:.2f} ms "
            f"| {row['api_server_and_etcd_ms']:.2f} ms |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "calls_each": args.calls,
        "concurrency": CONCURRENCY,
    }
    with ControlPlane(node_pools=[]) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        cp.kubectl("create", "namespace", NAMESPACE)
        results["client_cpu_ms_per_call"] = asyncio.run(_measure(cp.kubeconfig, args.calls))
    out = ROOT / "benchmarks" / "results" / "api-client.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
