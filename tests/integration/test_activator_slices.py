"""Chutes at zero keep the activator in their Service's path through an operator restart and a leader
failover (issue 25): the real kube-apiserver and EndpointSlice controller, operators as processes.

SIMULATION: no kube-proxy routes the Chute Services on this host. The request loop routes each
request as kube-proxy would, from the Chute Service's EndpointSlices as the API server has them at
that moment: to the activator (a loopback stand-in that answers 200, as a held request would be
answered) when a slice lists it ready, else the request is refused. The slices' uids show a slice
deleted and created again between two looks.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.discovery_v1 import EndpointSlice
from tests.integration.test_scale_to_zero import ACTIVATOR_POD_IP, _activator_service, _chute
from tests.kube_helpers import apply, eventually, get
from tests.operator_fixtures import OperatorProcess

from chute_operator.zero import ASLEEP_ANNOTATION

pytestmark = pytest.mark.integration

CHUTES = ("idle-a", "idle-b", "idle-c")
LOOP_SECONDS = 120
"""The request loop's bound."""


class Held(BaseHTTPRequestHandler):
    """The activator's pod, as a request reaching it sees it: answered."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Traffic:
    """Requests to every Chute, routed by its Service's slices, until stopped (at most LOOP_SECONDS)."""

    client: Client
    namespace: str
    port: int
    answered: int = 0
    refused: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    uids: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    """Each Chute's port on the activator, as its slice names it: kept across restarts and failovers."""

    def run(self) -> None:
        deadline = time.monotonic() + LOOP_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            slices = {s.metadata.name: s for s in self.client.list(EndpointSlice, namespace=self.namespace)}
            for chute in CHUTES:
                piece = slices.get(f"{chute}-activator")
                if piece is None:
                    self.refused.append(f"{chute} at {time.strftime('%H:%M:%S')}: no activator slice")
                    continue
                uid = str(piece.metadata.uid)
                if self.uids.setdefault(chute, uid) != uid:
                    self.recreated.append(f"{chute}: its activator slice was deleted and created again")
                    self.uids[chute] = uid
                port = int((piece.ports or [])[0].port or 0)
                if self.ports.setdefault(chute, port) != port:
                    self.refused.append(f"{chute}: its activator port moved ({self.ports[chute]} -> {port})")
                ready = [
                    address
                    for endpoint in piece.endpoints or []
                    if endpoint.conditions is None or endpoint.conditions.ready is not False
                    for address in endpoint.addresses
                ]
                if ready != [ACTIVATOR_POD_IP]:
                    self.refused.append(f"{chute}: no ready activator endpoint ({ready})")
                    continue
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as response:
                    assert response.status == 200
                self.answered += 1
            time.sleep(0.1)


@pytest.fixture
def held() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Held)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _operator(cp: Any, namespace: str, tmp_path: Path, identity: str) -> OperatorProcess:
    return OperatorProcess(
        cp.kubeconfig,
        tmp_path,
        identity,
        (namespace,),
        CHUTE_OPERATOR_LEASE_NAME=f"slices-{namespace}",
        CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
        CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="5",
    )


def _leading(operator: OperatorProcess) -> bool | None:
    try:
        return operator.metric("chute_operator_leader") == 1 or None
    except OSError:
        return None


def _at_zero(cp: Any, namespace: str, name: str) -> None:
    """As the operator's scale-to-zero manager puts an idle Chute to sleep (no 60 s idle window)."""
    sleep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {ASLEEP_ANNOTATION: time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())},
        },
        "spec": {"replicas": 0},
    }
    cp.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=chute-operator-zero", "-f", "-",
        input=json.dumps(sleep),
    )  # fmt: skip


def test_chutes_at_zero_keep_the_activator_through_a_restart_and_a_failover(
    control_plane: Any,
    chute_crd: Path,
    namespace: str,
    tmp_path: Path,
    session_operator_paused: None,
    held: int,
) -> None:
    cp = control_plane
    _activator_service(cp, namespace)
    first = _operator(cp, namespace, tmp_path, "slices-1").start()
    second: OperatorProcess | None = None
    traffic = Traffic(Client(config=KubeConfig.from_file(cp.kubeconfig)), namespace, held)
    loop = threading.Thread(target=traffic.run, daemon=True)
    try:
        for name in CHUTES:
            apply(cp, _chute(name), namespace)
        for name in CHUTES:
            eventually(lambda n=name: get(cp, "deployment", n, namespace), what=f"{name}'s Deployment")
            _at_zero(cp, namespace, name)
        for name in CHUTES:
            eventually(
                lambda n=name: get(cp, "endpointslice", f"{n}-activator", namespace),
                what=f"{name}'s activator slice",
            )
        loop.start()
        time.sleep(2)

        # A restart: the new process's first reconciles run before its scale-to-zero loop.
        first.stop()
        first.start()
        eventually(lambda: _leading(first), what="the restarted operator leads", timeout=60)
        time.sleep(8)  # its initial sync's reconciles and a scale-to-zero check

        # A failover: a standby takes over when the leader stops.
        second = _operator(cp, namespace, tmp_path, "slices-2").start()
        time.sleep(3)
        first.stop()
        eventually(lambda: _leading(second), what="the standby leads", timeout=60)
        time.sleep(8)
    finally:
        traffic.stop.set()
        if loop.is_alive():
            loop.join(30)
        if second is not None:
            second.stop()
        first.stop()
    print(f"{traffic.answered} requests answered through a restart and a failover")
    assert traffic.answered > 100, traffic.answered
    assert traffic.refused == [], traffic.refused[:10]
    assert traffic.recreated == []
    for name in CHUTES:  # still at zero, still reached through the activator
        assert get(cp, "endpointslice", f"{name}-activator", namespace) is not None
