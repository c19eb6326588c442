"""Scale to zero on real pods: the session control plane's real node (kubelet, containerd, kube-proxy).

Two Chutes, A and B, are created together, so that one idle window (shutdownAfterSeconds 60 s, the
least the CRD accepts) brings both to zero: their real pods are terminated and removed. Every request
below goes to a Chute Service's ClusterIP, through kube-proxy and the operator's ``NAME-activator``
EndpointSlice, to a real activator process on the real node's bridge address
(tests/scale_to_zero_harness.py has the setup; benchmarks/scale_to_zero.py measures it):

1. the activator holds up to 25 requests per Chute: 20 concurrent requests to A at zero, one of them
   streaming, half of them naming B (Host, X-Chute), wake A (only A: the activator knows the Chute
   by the port A's slice sends them to) and are all answered 200 once the restarted model has
   loaded; the stream's tokens arrive one by one (several chunks apart in time, not one body). One
   of them is broken down into the stages of the wake, every stage seen and in order;
2. with A's replica ready, the operator has removed A's activator slice and kube-proxy its rule:
   requests to A's ClusterIP are answered 200 and the activator's own counters do not move;
3. the activator restarted on the same address with a queue limit of 10: 20 concurrent requests to
   B (still at zero): exactly 10 answered 200 and 10 answered 503 with Retry-After, no connection
   error; Retry-After is the load time the operator measured on B's pod (``status.loadSeconds``).

About 95 s, most of it the idle window.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.kube_helpers import apply, condition, eventually, get, items, service_address
from tests.metrics_api_harness import metrics_api_on_loopback
from tests.scale_to_zero_harness import (
    IDLE_WINDOW,
    NAME,
    STAGES,
    Watcher,
    activator_counters,
    activator_process,
    activator_service,
    at_zero,
    breakdown,
    chute,
    chute_port,
    kube_proxy_sends_to,
)

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(600)]

LOAD_SECONDS = 2.0
A, B = NAME, f"{NAME}-b"
CONCURRENT = 20
QUEUE_LIMIT = 10
TOKENS_PER_SECOND = 10.0  # the stream's tokens 0.1 s apart
STREAM_TOKENS = 6
READY_REQUESTS = 20
REQUEST_TIMEOUT = 120.0


def _body(stream: bool) -> str:
    return json.dumps(
        {
            "model": "chute-modelsim",
            "max_tokens": STREAM_TOKENS if stream else 2,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )


def send(address: tuple[str, int], name: str, namespace: str, stream: bool = False) -> dict[str, Any]:
    """One request to ``address`` for Chute ``name``: status, headers, body, the wall-clock times it
    was sent and answered, and for a stream the arrival time of each ``data:`` event; a connection
    error is recorded as ``error``, not raised."""
    sent = time.time()
    answer: dict[str, Any] = {"sent": sent, "events": []}
    connection = http.client.HTTPConnection(*address, timeout=REQUEST_TIMEOUT)
    try:
        headers = {
            "Content-Type": "application/json",
            "Host": f"{name}.{namespace}.svc.cluster.local",
            "X-Chute": f"{namespace}/{name}",  # what the activator once routed by: ignored now
        }
        connection.request("POST", "/v1/chat/completions", _body(stream), headers)
        response = connection.getresponse()
        answer.update(status=response.status, headers=dict(response.getheaders()))
        if stream and response.status == 200:
            for _ in range(10 * STREAM_TOKENS):  # bounded: a few lines per token
                line = response.readline()
                if not line:
                    break
                if line.startswith(b"data:"):
                    answer["events"].append((time.time(), line.strip()))
                    if line.strip() == b"data: [DONE]":
                        break
            answer["body"] = b""
        else:
            answer["body"] = response.read()
    except OSError as error:
        answer["error"] = repr(error)
    finally:
        connection.close()
    answer["answered"] = time.time()
    return answer


def concurrently(count: int, one: Any) -> list[dict[str, Any]]:
    """``one(index)`` in ``count`` threads released together; their answers in index order."""
    answers: list[dict[str, Any]] = [{} for _ in range(count)]
    barrier = threading.Barrier(count)

    def worker(index: int) -> None:
        barrier.wait(30)
        answers[index] = one(index)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT + 40)
    return answers


def ready_pod(cp: ControlPlane, name: str, namespace: str) -> bool:
    return any(
        condition(p, "Ready").get("status") == "True"
        for p in items(cp, "pods", namespace, f"chutes.ai/chute={name}")
    )


def count(counters: dict[str, float], metric: str, name: str, reason: str | None = None) -> float:
    """The sum of ``metric``'s samples for Chute ``name`` (and ``reason``, when given)."""
    return sum(
        value
        for sample, value in counters.items()
        if sample.startswith(metric + "{")
        and f'chute="{name}"' in sample
        and (reason is None or f'reason="{reason}"' in sample)
    )


def test_idle_real_pods_go_and_requests_to_their_services_at_zero_are_held_streamed_or_refused_cleanly(
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
    watcher = Watcher(cp, namespace, A)
    watcher.start()
    try:
        with metrics_api_on_loopback(
            cp,
            namespace,
            tmp_path,
            CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
            CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
            CHUTE_OPERATOR_SIDECAR_IMAGE=image,
        ):
            activator_service(cp, namespace, host)
            for name in (A, B):  # created together: one idle window brings both to zero
                # Concurrency above the 20 requests: the sidecar answers none of them 429.
                apply(
                    cp, chute(image, node, LOAD_SECONDS, name, TOKENS_PER_SECOND, CONCURRENT + 4), namespace
                )
            with activator_process(cp, namespace, tmp_path, host, CONCURRENT + 5) as ports:
                _, metrics_port, debug_port = ports
                started = time.monotonic()
                for name in (A, B):
                    eventually(
                        lambda n=name: ready_pod(cp, n, namespace), what=f"{name}'s pod Ready", timeout=300
                    )
                for name in (A, B):
                    eventually(
                        lambda n=name: at_zero(cp, namespace, n) or None,
                        what=f"{name} at 0 replicas",
                        timeout=IDLE_WINDOW + 120,
                    )
                    eventually(
                        lambda n=name: not items(cp, "pods", namespace, f"chutes.ai/chute={n}") or None,
                        what=f"{name}'s pod gone",
                        timeout=120,
                    )
                    eventually(
                        lambda n=name: get(cp, "endpointslice", f"{n}-activator", namespace),
                        what=f"{name}'s Service reaching the activator",
                    )
                print(
                    f"both Chutes at zero, their pods gone: {time.monotonic() - started:.1f}s after creation"
                )

                # 1. Twenty concurrent requests to A at zero, the last one streaming: all answered.
                address_a, port_a = service_address(cp, A, namespace), chute_port(cp, namespace, A)
                assert get(cp, "endpointslice", f"{A}-activator", namespace)["ports"][0]["port"] == port_a
                assert port_a != chute_port(cp, namespace, B)
                watcher.reset()
                # Half of them name B (Host, X-Chute) while they go through A's Service: they reach A,
                # and B, at zero too, is not woken (step 2 checks it is still at zero).
                answers = concurrently(
                    CONCURRENT, lambda i: send(address_a, B if i % 2 else A, namespace, i == CONCURRENT - 1)
                )
                assert [a.get("error") for a in answers if a.get("error")] == []
                assert [a["status"] for a in answers] == [200] * CONCURRENT, [a.get("body") for a in answers]
                timed = answers[0]
                assert timed["answered"] - timed["sent"] >= LOAD_SECONDS  # held through the load, not refused
                for plain in answers[:-1]:
                    assert json.loads(plain["body"])["choices"][0]["message"]["content"]
                stream = answers[-1]
                tokens = [(at, line) for at, line in stream["events"] if b'"content"' in line]
                assert stream["events"][-1][1] == b"data: [DONE]", stream["events"]
                assert len(tokens) >= STREAM_TOKENS - 1, stream["events"]
                assert (
                    tokens[0][0] - stream["sent"] >= LOAD_SECONDS
                )  # the stream too was held through the wake
                apart = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(tokens)]
                assert sum(gap >= 0.5 / TOKENS_PER_SECOND for gap in apart) >= STREAM_TOKENS - 2, apart
                # The wake's breakdown (as the benchmark reports it): complete, in the order things happen.
                eventually(lambda: "pod_ready" in watcher.first or None, what="A's pod Ready", timeout=60)
                stages = breakdown(cp, namespace, watcher, debug_port, timed["sent"], timed["answered"], A)[
                    "stages_s"
                ]
                spread = max(a["answered"] for a in answers) - min(a["sent"] for a in answers)
                print(
                    f"A at zero: {CONCURRENT} answered 200 in {spread:.2f}s; stream gaps "
                    f"{[round(g, 3) for g in apart]}; stages {json.dumps(stages)}"
                )
                assert set(stages) == {name for name, _ in STAGES}, stages
                assert (
                    stages["held"]
                    <= stages["wake_written"]
                    <= stages["pod_created"]
                    <= stages["model_loaded"]
                )
                assert stages["model_loaded"] <= stages["activator_ready_seen"] <= stages["forwarded"], stages
                assert stages["forwarded"] <= stages["answered"] <= stages["client_answered"], stages

                # 2. A ready: the activator is out of its data path.
                eventually(
                    lambda: get(cp, "endpointslice", f"{A}-activator", namespace) is None or None,
                    what="A's activator slice removed",
                )
                eventually(
                    lambda: not kube_proxy_sends_to(namespace, A, f"{host}:{port_a}") or None,
                    what="kube-proxy's rule from A's Service to the activator gone",
                    timeout=30,
                )
                before = activator_counters(metrics_port, host)
                assert count(before, "chute_activator_forwarded_total", A) == CONCURRENT, before
                ready = [send(address_a, A, namespace) for _ in range(READY_REQUESTS)]
                assert [a.get("status") for a in ready] == [200] * READY_REQUESTS, ready
                assert activator_counters(metrics_port, host) == before  # none of them passed the activator
                assert at_zero(cp, namespace, B)

            # 3. The activator restarted on the same address, holding at most 10 per Chute: B at zero.
            with activator_process(cp, namespace, tmp_path, host, QUEUE_LIMIT) as (_, metrics_port, _):
                assert at_zero(cp, namespace, B)
                address_b = service_address(cp, B, namespace)
                answers = concurrently(CONCURRENT, lambda i: send(address_b, B, namespace))
                assert [a.get("error") for a in answers if a.get("error")] == []
                statuses = collections.Counter(a["status"] for a in answers)
                assert statuses == {200: QUEUE_LIMIT, 503: CONCURRENT - QUEUE_LIMIT}, statuses
                for refused in (a for a in answers if a["status"] == 503):
                    assert int(refused["headers"]["Retry-After"]) >= 1, refused["headers"]
                    assert json.loads(refused["body"])["error"]["reason"] == "QueueFull", refused["body"]
                counters = activator_counters(metrics_port, host)
                assert count(counters, "chute_activator_forwarded_total", B) == QUEUE_LIMIT, counters
                assert count(counters, "chute_activator_rejected_total", B, "QueueFull") == QUEUE_LIMIT, (
                    counters
                )
                retry = sorted({a["headers"]["Retry-After"] for a in answers if a["status"] == 503})
                print(f"B at zero, queue limit {QUEUE_LIMIT}: {dict(statuses)}, Retry-After {retry}")
                # Retry-After is B's load time as the operator measured it on B's real pod (model
                # container start to pod Ready, whole seconds), kept in its status while at zero and
                # read by an activator that started after it was measured.
                load = ((get(cp, "chute", B, namespace) or {}).get("status") or {}).get("loadSeconds")
                assert isinstance(load, int), load
                assert 1 <= load <= LOAD_SECONDS + 10, load
                assert retry == [str(load)], (retry, load)
    finally:
        watcher.stop()
