"""Load that keeps every ready replica of a Chute full, and a sampler of its replica counts: shared by
tests/realnode/test_autoscaling_on_real_pods.py and benchmarks/autoscaling.py --real-node.

The load goes only to the pods' own IPs (the real node's pod subnet, kept on this machine by the
network guard): ``concurrency`` streaming completions held open on each ready pod, at most
``max_pods`` pods, each stream closed by :meth:`FullReplicas.close` (or when its socket's 30 s read
timeout would fire: nothing is read after the first event).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from chute_shared.ports import SIDECAR_PORT
from tests.kube_helpers import Kubectl, condition
from tests.metrics_api_harness import CONCURRENCY, Streams


def ready_pod_ips(cp: Kubectl, name: str, namespace: str) -> list[str]:
    """The pod IPs of the Chute's pods that are Ready and not being deleted, oldest first."""
    result = cp.kubectl("get", "pods", "-n", namespace, "-l", f"chutes.ai/chute={name}", "-o", "json")
    pods = sorted(json.loads(result.stdout)["items"], key=lambda p: p["metadata"]["creationTimestamp"])
    return [
        p["status"]["podIP"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and condition(p, "Ready").get("status") == "True"
        and p["status"].get("podIP")
    ]


class FullReplicas:
    """``concurrency`` streams held open on each ready pod that has none yet (at most ``max_pods``)."""

    def __init__(self, max_pods: int, per_pod: int = CONCURRENCY) -> None:
        self.max_pods, self.per_pod = max_pods, per_pod
        self.by_pod: dict[str, Streams] = {}

    def fill(self, pod_ips: list[str]) -> int:
        """Open streams on the pods not loaded yet; the number of pods loaded."""
        for ip in pod_ips:
            if ip in self.by_pod or len(self.by_pod) >= self.max_pods:
                continue
            streams = Streams(ip, SIDECAR_PORT)
            self.by_pod[ip] = streams
            streams.start(self.per_pod)
        return len(self.by_pod)

    def close(self) -> None:
        for streams in self.by_pod.values():
            streams.close()
        self.by_pod = {}


class ReplicaSampler:
    """In a thread, every ``interval`` seconds for at most ``limit`` seconds: the Deployment's
    ``spec.replicas``, the HPA's ``desiredReplicas`` and ``ScalingLimited`` reason, and the pods not
    being deleted. Each sample is one kubectl call."""

    def __init__(
        self, cp: Kubectl, name: str, namespace: str, interval: float = 1.0, limit: float = 600.0
    ) -> None:
        self.cp, self.name, self.namespace = cp, name, namespace
        self.interval, self.limit = interval, limit
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{name}", daemon=True)

    def __enter__(self) -> ReplicaSampler:
        self.started = self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def sample(self) -> dict[str, Any]:
        result = self.cp.kubectl(
            "get", "deployments,horizontalpodautoscalers,pods", "-n", self.namespace,
            "-l", f"chutes.ai/chute={self.name}", "-o", "json", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        found = json.loads(result.stdout)["items"]
        deployment: dict[str, Any] = next((o for o in found if o["kind"] == "Deployment"), {})
        hpa: dict[str, Any] = next((o for o in found if o["kind"] == "HorizontalPodAutoscaler"), {})
        pods = [o for o in found if o["kind"] == "Pod" and not o["metadata"].get("deletionTimestamp")]
        limited = condition(hpa, "ScalingLimited")
        return {
            "t": round(time.monotonic() - self._started, 1),
            "replicas": (deployment.get("spec") or {}).get("replicas", 0),
            "desired": (hpa.get("status") or {}).get("desiredReplicas", 0),
            "limited": limited.get("reason", "") if limited.get("status") == "True" else "",
            "pods": len(pods),
        }

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() - self._started < self.limit:
            try:
                self.samples.append(self.sample())
            except (RuntimeError, ValueError, KeyError):
                self.errors += 1
            self._stop.wait(self.interval)

    def most(self, key: str) -> int:
        """The highest value of ``key`` sampled (0 before any sample)."""
        return max((int(s[key]) for s in self.samples), default=0)

    def saw_limited(self, reason: str = "TooManyReplicas") -> bool:
        return any(s["limited"] == reason for s in self.samples)

    def limited_samples(self, reason: str = "TooManyReplicas") -> list[dict[str, Any]]:
        """The samples in which the HPA said ``reason`` (TooManyReplicas: it wants more than its max)."""
        return [s for s in self.samples if s["limited"] == reason]
