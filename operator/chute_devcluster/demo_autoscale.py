"""The demo's in-pod part, on its real Chute: the HPA reading its metric, a load that scales the Chute
up, the Chute going to zero after its idle window, and one request that wakes it through the activator.

Every request goes from this machine to the real node's pod IPs or the Chute's ClusterIP (kept on
the machine by the network guard); each wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chute_devcluster.chart_install import condition, get, items, kubectl, ready_pod_ips
from chute_devcluster.demo_real import MODEL, post_chat, wait_until_routed
from chute_shared.ports import SIDECAR_PORT

Say = Callable[[str], None]
STREAM_TOKENS = 4000
"""A held stream's length: at the model's 20 tokens/s it outlasts the load (closed when it ends)."""


def _selector(name: str) -> str:
    return f"chutes.ai/chute={name}"


def hpa_reads(kubeconfig: Path, namespace: str, name: str) -> bool:
    """The HPA scales on a value read through the metrics API (``ScalingActive``, a current metric)."""
    hpa = get(kubeconfig, "hpa", name, namespace)
    current = (hpa.get("status") or {}).get("currentMetrics") or []
    return condition(hpa, "ScalingActive").get("status") == "True" and bool(current)


def show_hpa(kubeconfig: Path, namespace: str, name: str, say: Say, timeout: float = 120) -> bool:
    """Wait until the Chute's HPA reads its metric, then print ``kubectl get hpa``; whether it did."""
    deadline = time.monotonic() + timeout
    while not hpa_reads(kubeconfig, namespace, name):
        if time.monotonic() > deadline:
            say(f"the HPA read no metric within {timeout:.0f}s:")
            print(kubectl(kubeconfig, "describe", "hpa", name, "-n", namespace, check=False).stdout)
            return False
        time.sleep(1)
    say("its HPA reads the metric through the chart's APIService (the operator pods' metrics API):")
    print(kubectl(kubeconfig, "get", "hpa", name, "-n", namespace).stdout, end="", flush=True)
    return True


class HeldStreams:
    """Streaming completions held open on one pod's sidecar: each is in flight until closed."""

    def __init__(self, host: str, port: int = SIDECAR_PORT) -> None:
        self.host, self.port = host, port
        self.open: list[http.client.HTTPConnection] = []

    def start(self, count: int) -> int:
        """Open ``count`` streams (each returns once its first event arrived); how many are open."""
        body = json.dumps(
            {"model": MODEL, "stream": True, "max_tokens": STREAM_TOKENS,
             "messages": [{"role": "user", "content": "Tell me a long story."}]}
        )  # fmt: skip
        for _ in range(count):
            connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                if response.status != 200:
                    connection.close()
                    continue
                response.readline()  # the first event: the request is in flight
            except OSError:
                connection.close()
                continue
            self.open.append(connection)
        return len(self.open)

    def close(self) -> None:
        for connection in self.open:
            connection.close()
        self.open = []


def _replicas(kubeconfig: Path, namespace: str, name: str) -> tuple[int, int, str]:
    """The Deployment's desired and ready replicas, and the HPA's current value of the metric."""
    status = get(kubeconfig, "deployment", name, namespace)
    hpa = get(kubeconfig, "hpa", name, namespace)
    current = ((hpa.get("status") or {}).get("currentMetrics") or [{}])[0]
    value = ((current.get("pods") or {}).get("current") or {}).get("averageValue", "?")
    return (
        int((status.get("spec") or {}).get("replicas") or 0),
        int((status.get("status") or {}).get("readyReplicas") or 0),
        str(value),
    )


def scale_up(
    kubeconfig: Path, namespace: str, name: str, per_pod: int, most: int, say: Say, timeout: float = 180
) -> int:
    """Keep every ready replica full (``per_pod`` held streams, its concurrency) until ``most`` replicas
    are ready or ``timeout``; print each change. The streams are closed at the end. The ready replicas."""
    say(f"load: {per_pod} held streams on every ready replica (its concurrency), until {most} replicas serve")
    loads: dict[str, HeldStreams] = {}
    started = time.monotonic()
    shown: tuple[int, int, str] | None = None
    ready = 0
    try:
        while time.monotonic() - started < timeout:
            for ip in ready_pod_ips(kubeconfig, namespace, _selector(name)):
                if ip not in loads and len(loads) < most:
                    loads[ip] = HeldStreams(ip)
                    opened = loads[ip].start(per_pod)
                    print(f"  {time.monotonic() - started:5.1f}s  {opened} streams held on {ip}", flush=True)
            replicas, ready, value = _replicas(kubeconfig, namespace, name)
            if (replicas, ready, value) != shown:
                shown = (replicas, ready, value)
                print(
                    f"  {time.monotonic() - started:5.1f}s  replicas {replicas}, ready {ready}, "
                    f"HPA metric (in flight / concurrency, average) {value}",
                    flush=True,
                )
            if ready >= most:
                break
            time.sleep(1)
    finally:
        for streams in loads.values():
            streams.close()
    say(f"{ready} replicas serve after {time.monotonic() - started:.1f}s of load; the load stops")
    return ready


def _at_zero(kubeconfig: Path, namespace: str, name: str) -> bool:
    """The Deployment asks for no replica and the Chute's pods are gone (a terminating pod that still
    serves would take a request that should wake the Chute through the activator)."""
    deployment = get(kubeconfig, "deployment", name, namespace)
    gone = not items(kubeconfig, "pod", namespace, f"app.kubernetes.io/instance={name}")
    return (deployment.get("spec") or {}).get("replicas") == 0 and gone


def wait_zero(kubeconfig: Path, namespace: str, name: str, idle: int, say: Say, timeout: float) -> bool:
    """Wait until the Chute is at zero (bounded); print its replicas now and then; whether it got there."""
    say(f"no more requests: after {idle}s idle (shutdownAfterSeconds) the operator scales it to zero")
    started = time.monotonic()
    last = -1.0
    while time.monotonic() - started < timeout:
        if _at_zero(kubeconfig, namespace, name):
            chute = get(kubeconfig, "chute", name, namespace)
            ready = condition(chute, "Ready")
            say(
                f"at zero after {time.monotonic() - started:.1f}s: no pod; "
                f"Ready={ready.get('status')} ({ready.get('reason')})"
            )
            return True
        if time.monotonic() - last >= 15:
            last = time.monotonic()
            replicas, ready_count, _ = _replicas(kubeconfig, namespace, name)
            print(f"  {last - started:5.1f}s  replicas {replicas}, ready {ready_count}", flush=True)
        time.sleep(1)
    say(f"not at zero within {timeout:.0f}s")
    return False


def wake(kubeconfig: Path, namespace: str, name: str, say: Say) -> float | None:
    """One request to the Chute's Service while it is at zero: held by the activator, which wakes the
    Chute and forwards it once a replica is ready. Its seconds (None if not answered 200)."""
    service = get(kubeconfig, "service", name, namespace)
    address = (service["spec"]["clusterIP"], int(service["spec"]["ports"][0]["port"]))
    via = get(kubeconfig, "endpointslice", f"{name}-activator", namespace)
    if via:
        say(f"the Service {address[0]}:{address[1]} points at the activator (EndpointSlice {name}-activator)")
    wait_until_routed(address)
    started = time.monotonic()
    status, _, answer = post_chat(f"http://{address[0]}:{address[1]}", "Are you awake?", timeout=180)
    seconds = time.monotonic() - started
    text = answer.get("choices", [{}])[0].get("message", {}).get("content", answer)
    print(f"  'Are you awake?' -> {status} in {seconds:.1f}s: {text!r}", flush=True)
    replicas = _replicas(kubeconfig, namespace, name)[0]
    say(f"woken through the activator in {seconds:.1f}s (the pod's start included); replicas {replicas}")
    return seconds if status == 200 else None


def story(
    kubeconfig: Path, namespace: str, name: str, spec: dict[str, Any], say: Say, mark: Callable[[str], object]
) -> bool:
    """The HPA, the scale-up, zero and the wake, each stage marked; whether every one happened."""
    reads = show_hpa(kubeconfig, namespace, name, say)
    mark("HPA reads its metric")
    most = int(spec["maxInstances"])
    scaled = scale_up(kubeconfig, namespace, name, int(spec["concurrency"]), most, say) >= most
    mark(f"load scales it up to {most} replicas")
    idle = int(spec["shutdownAfterSeconds"])
    zero = wait_zero(kubeconfig, namespace, name, idle, say, timeout=idle + 150)
    mark("idle window, to zero")
    woke = zero and wake(kubeconfig, namespace, name, say) is not None
    mark("a request wakes it")
    return reads and scaled and zero and woke
