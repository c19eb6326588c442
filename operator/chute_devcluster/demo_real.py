"""The demo's real part: a Chute served for real on the local cluster's real node.

The simulated model server (``chute-operator modelsim``) runs in the project's image behind the
real sidecar; requests go from this machine to the Chute's ClusterIP (kept on the machine by the
network guard), a few at a time, then one more than the concurrency limit allows, which the
sidecar answers 429.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

REAL_CHUTE = "sim-chat-real"
CONCURRENCY = 2
MODEL = "sim-chat"
MODEL_ARGS = ["--model", MODEL, "--time-to-first-token-seconds", "2", "--tokens-per-second", "20"]
QUESTIONS = ("What is a Chute?", "Where does this answer come from?", "Is the GPU real?")
SCALING = {"minInstances": 0, "maxInstances": 3, "shutdownAfterSeconds": 60}
"""With the chart's operator, metrics API and activator in pods: an HPA up to 3 replicas, and zero after
the shortest idle window the API allows (60 s)."""


def real_chute(image: str, scaling: bool = False) -> dict[str, Any]:
    """The simulated model on the real node's simulated A10 GPU, concurrency 2 (``scaling``: with
    :data:`SCALING`)."""
    chute: dict[str, Any] = {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": REAL_CHUTE},
        "spec": {
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "template": "custom",
            "command": ["chute-operator", "modelsim"],
            "args": MODEL_ARGS,
            "nodeSelector": {"gpuCount": 1, "include": ["a10"]},
            "concurrency": CONCURRENCY,
            "resources": {"cpu": "100m", "memory": "256Mi", "sharedMemory": "16Mi"},
            "cache": {"size": "16Mi"},
            "monitoring": {"serviceMonitor": False},
        },
    }
    if scaling:
        chute["spec"].update(SCALING)
    return chute


def post_chat(url: str, question: str, timeout: float = 30.0) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 8}
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        # http to the demo's own Service address (bandit B310)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            detail = json.loads(text)
        except ValueError:
            detail = {"detail": text.decode(errors="replace")}
        return error.code, dict(error.headers), detail


def wait_until_routed(address: tuple[str, int], timeout: float = 30.0) -> None:
    """kube-proxy routes the ClusterIP a moment after the pod turns Ready: wait for a TCP connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(address, timeout=3).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def tell_story(cluster_ip: str, port: int, say: Any) -> None:
    """A few requests through the Service with their answers, then one over the limit: a 429."""
    url = f"http://{cluster_ip}:{port}"
    wait_until_routed((cluster_ip, port))
    say(f"{REAL_CHUTE} serves on the real node; requests to its Service {url}")
    for question in QUESTIONS:
        started = time.monotonic()
        status, _, answer = post_chat(url, question)
        text = answer.get("choices", [{}])[0].get("message", {}).get("content", answer)
        usage = answer.get("usage", {})
        tokens = f"{usage.get('prompt_tokens', '?')} + {usage.get('completion_tokens', '?')} tokens"
        print(f"  {question!r} -> {status} in {time.monotonic() - started:.1f}s: {text!r} ({tokens})")
    extra = CONCURRENCY + 1
    say(f"{extra} requests at once; the sidecar lets {CONCURRENCY} in (concurrency {CONCURRENCY})")
    with ThreadPoolExecutor(max_workers=extra) as pool:
        results = list(pool.map(lambda i: post_chat(url, f"parallel request {i}"), range(extra)))
    for index, (status, headers, answer) in enumerate(results):
        if status == 429:
            print(f"  request {index} -> 429 Retry-After: {headers.get('Retry-After')} {answer}")
        else:
            print(f"  request {index} -> {status}")
