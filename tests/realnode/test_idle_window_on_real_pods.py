"""A request that starts just before the idle window ends keeps the Chute from going to zero (issue 25,
item 6), on a real pod: the real sidecar, kube-proxy, the operator with its metrics API reading the
pod's sidecar, and a real activator process (so that the Chute may go to zero at all).

The operator's scraper reads every 9 s (its readings kept 10 s, their age added): a short request
times the idleness so that the scraper's last round before the window ends falls at about 55 s of it,
and the next at about 64 s. The pod's sidecar (``/_conn_stats``, what the scraper reads) is then
watched until it has been idle for about 59 s of the 60 s window, and a streamed chat completion
begins through the Chute Service's ClusterIP; it lasts 10 s. The metrics API's reading, taken before
the request, soon says idle for the whole window; only the sidecar, read again before a sleep, shows
the stream. While the stream runs (and a few seconds after), the Chute keeps its replica, and every
token arrives. Before the fix the operator trusted the stale reading and scaled the Chute to zero
under the stream (tests/integration/test_idle_confirmed.py, on loopback).

About 100 s: most of it the idle window.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.apiclient import ApiError
from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.kube_helpers import apply, condition, eventually, items, service_address
from tests.metrics_api_harness import metrics_api_on_loopback
from tests.scale_to_zero_harness import IDLE_WINDOW, activator_process, activator_service, chute

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(420)]

NAME = "edge"
SCRAPE_INTERVAL = 9.0
READS = "chute_operator_metrics_api_sidecar_reads_total"
TOKENS_PER_SECOND = 2.0
STREAM_TOKENS = 20  # 10 s at the model's rate
BEFORE_THE_END = 1.2  # seconds of the window left when the stream begins


def _idle(pod_ip: str) -> float | None:
    """The sidecar's own idle time (``/_conn_stats`` on its metrics port, as the scraper reads it)."""
    connection = http.client.HTTPConnection(pod_ip, 9090, timeout=2)
    connection.request("GET", "/_conn_stats")
    idle = json.loads(connection.getresponse().read()).get("idle_secs")
    connection.close()
    return None if idle is None else float(idle)


def _chat(
    address: tuple[str, int], host: str, stream: bool, tokens: int
) -> tuple[int, list[tuple[float, bytes]]]:
    """A chat completion through the Service: its status and, streamed, each event's arrival."""
    body = json.dumps(
        {"model": "chute-modelsim", "max_tokens": tokens, "stream": stream,
         "messages": [{"role": "user", "content": "hi"}]}
    )  # fmt: skip
    connection = http.client.HTTPConnection(*address, timeout=60)
    connection.request(
        "POST", "/v1/chat/completions", body, {"Host": host, "Content-Type": "application/json"}
    )
    response = connection.getresponse()
    events: list[tuple[float, bytes]] = []
    if not stream or response.status != 200:
        response.read()
    else:
        for _ in range(4 * tokens + 10):  # bounded: two lines per event
            line = response.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                events.append((time.monotonic(), line.strip()))
                if line.strip() == b"data: [DONE]":
                    break
    connection.close()
    return response.status, events


class Replicas:
    """Every ``spec.replicas`` of the Deployment seen, polled every 0.25 s until stopped (bounded)."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{NAME}"
        self.cp, self.seen = cp, set[int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Replicas:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(ApiError, OSError):
                spec = self.cp.api.get(self.path, timeout=5).get("spec") or {}
                self.seen.add(int(spec.get("replicas", 1)))
            self._stop.wait(0.25)


def test_a_stream_that_begins_just_before_the_idle_window_ends_keeps_the_real_pod(
    control_plane: ControlPlane,
    real_node: RealNode,
    chute_crd: Path,
    namespace: str,
    session_operator_paused: None,
    tmp_path: Path,
) -> None:
    cp = control_plane
    image = real_node.images[0].ref
    assert cp.real_node_settings is not None
    host, node = cp.real_node_settings.node_ip, cp.real_node_settings.name
    with metrics_api_on_loopback(
        cp,
        namespace,
        tmp_path,
        SCRAPE_INTERVAL,
        CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
        CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
        CHUTE_OPERATOR_SIDECAR_IMAGE=image,
    ) as (operator, _):
        activator_service(cp, namespace, host)
        apply(cp, chute(image, node, 1.0, NAME, TOKENS_PER_SECOND, 8), namespace)
        with activator_process(cp, namespace, tmp_path, host):
            pod = eventually(
                lambda: next(
                    (p for p in items(cp, "pods", namespace, f"chutes.ai/chute={NAME}")
                     if condition(p, "Ready").get("status") == "True"),
                    None,
                ),
                what="the Chute's pod Ready", timeout=300,
            )  # fmt: skip
            pod_ip = pod["status"]["podIP"]
            # The operator knows the activator: without the request, nothing would keep it from zero.
            eventually(
                lambda: operator.metric("chute_operator_activator_ready_pods") >= 1, what="activator read"
            )
            address = service_address(cp, NAME, namespace)
            dns = f"{NAME}.{namespace}.svc.cluster.local"

            # The scraper's rounds, from its count of reads (one pod: one read a round).
            rounds: list[float] = []
            reads = operator.metric(READS, result="ok")
            for _ in range(int(4 * SCRAPE_INTERVAL / 0.05)):  # two rounds, bounded
                if len(rounds) == 2:
                    break
                now = operator.metric(READS, result="ok")
                if now > reads:
                    reads = now
                    rounds.append(time.monotonic())
                time.sleep(0.05)
            assert len(rounds) == 2, "the scraper read the sidecar less than twice in 36 s"
            reset = rounds[-1] + SCRAPE_INTERVAL - (IDLE_WINDOW - 5) % SCRAPE_INTERVAL
            while reset < time.monotonic() + 1:
                reset += SCRAPE_INTERVAL
            time.sleep(reset - time.monotonic())
            assert _chat(address, dns, False, 1)[0] == 200  # idle from here: a round at about 55 s of it

            # A stream that begins about a second before the window ends, after the last round before it.
            idle: float | None = 0.0
            for _ in range(int((IDLE_WINDOW + 5) / 0.1)):
                idle = _idle(pod_ip)
                assert idle is not None, "the sidecar is busy: something else sent it a request"
                if idle >= IDLE_WINDOW - BEFORE_THE_END:
                    break
                time.sleep(0.1)
            assert idle is not None
            assert IDLE_WINDOW - BEFORE_THE_END <= idle < IDLE_WINDOW, (
                f"the stream would not begin in time ({idle})"
            )
            with Replicas(cp, namespace) as replicas:
                status, events = _chat(address, dns, True, STREAM_TOKENS)
                time.sleep(3)  # a few more of the operator's checks (every second) after it ended
            print(
                f"a stream began at {idle:.2f}s of the {IDLE_WINDOW}s idle window; replicas {replicas.seen}"
            )

            assert status == 200
            assert events[-1][1] == b"data: [DONE]", events
            tokens = [
                (at, line) for at, line in events if b'"content":"' in line and b'"content":""' not in line
            ]
            assert len(tokens) == STREAM_TOKENS, events
            apart = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(tokens)]
            assert sum(gap >= 0.5 / TOKENS_PER_SECOND for gap in apart) >= STREAM_TOKENS - 2, apart
            assert 0 not in replicas.seen, "went to zero under a request that began before the window ended"
            assert replicas.seen == {1}, replicas.seen
            scaled: list[dict[str, Any]] = [
                e for e in items(cp, "events", namespace) if e.get("reason") == "ScaledToZero"
            ]
            assert scaled == []
            assert operator.process is not None
            assert operator.process.poll() is None
