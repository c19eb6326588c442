"""A request that begins just before the idle window ends keeps the Chute up (issue 25): the local
control plane, the operator with its metrics API, a real sidecar in front of modelsim on loopback.

The scraper reads every 9 s (its readings kept 10 s), so the request is invisible in the metrics
API's readings until the window has ended; only the sidecar, read just before a sleep, shows it.
SIMULATION as in test_scale_to_zero.py: the pod runs on a kwok node, and the operator reads the real
sidecar on 127.0.0.1 in its place (the metrics API's test-only address override).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_scale_to_zero import IDLE_WINDOW, _chute, operator_with_scale_to_zero
from tests.kube_helpers import apply, eventually, get, items
from tests.metrics_api_harness import LoopbackSidecar
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.integration

SCRAPE_INTERVAL = 9.0
READS = "chute_operator_metrics_api_sidecar_reads_total"


@pytest.fixture
def slow_scrape_operator(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path, session_operator_paused: None
) -> Iterator[tuple[OperatorProcess, Path]]:
    yield from operator_with_scale_to_zero(control_plane, namespace, tmp_path, SCRAPE_INTERVAL)


def _sidecar_idle(sidecar: LoopbackSidecar) -> float | None:
    connection = http.client.HTTPConnection("127.0.0.1", sidecar.metrics_port, timeout=2)
    connection.request("GET", "/_conn_stats")
    idle = json.loads(connection.getresponse().read()).get("idle_secs")
    connection.close()
    return None if idle is None else float(idle)


def _complete(sidecar: LoopbackSidecar) -> None:
    """One short chat completion through the sidecar's serving port."""
    body = json.dumps(
        {"model": "chute-modelsim", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    )
    connection = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=30)
    connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200


def test_a_request_just_before_the_window_ends_keeps_the_chute_up(
    control_plane: Any,
    namespace: str,
    slow_scrape_operator: tuple[OperatorProcess, Path],
    sidecar: LoopbackSidecar,
) -> None:
    cp, (operator, overrides) = control_plane, slow_scrape_operator
    apply(cp, _chute("busy"), namespace)
    pod = eventually(
        lambda: next(iter(items(cp, "pods", namespace, "chutes.ai/chute=busy")), None), what="the pod"
    )
    overrides.write_text(
        json.dumps({f"{namespace}/{pod['metadata']['name']}": f"127.0.0.1:{sidecar.metrics_port}"})
    )

    # The scraper's rounds come every 9 s: a request at the right moment puts one at about 55 s of
    # idleness, the next at about 64 s, after the window has ended.
    rounds: list[float] = []
    reads = operator.metric(READS, result="ok")
    for _ in range(int(4 * SCRAPE_INTERVAL / 0.05)):  # two rounds
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
    _complete(sidecar)  # idle from here: a round at about 55 s of it

    # A request just before the window ends, after the last round before it.
    deadline = time.monotonic() + IDLE_WINDOW + 5
    while time.monotonic() < deadline:
        idle = _sidecar_idle(sidecar)
        assert idle is not None
        if idle >= IDLE_WINDOW - 1.5:
            break
        time.sleep(0.1)
    _complete(sidecar)
    print(f"a request at {idle:.1f}s of idleness, its round at about {IDLE_WINDOW - 5}s")

    # Past the point where the metrics API's reading, with its age added, says idle for the window.
    watch_until = time.monotonic() + SCRAPE_INTERVAL + 4
    while time.monotonic() < watch_until:
        deployment = get(cp, "deployment", "busy", namespace)
        assert deployment is not None
        assert deployment["spec"].get("replicas") != 0, "went to zero right after a request"
        time.sleep(0.5)
    assert not [e for e in items(cp, "events", namespace) if e.get("reason") == "ScaledToZero"]
    assert operator.process is not None
    assert operator.process.poll() is None
