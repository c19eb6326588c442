"""Probes for NetworkPolicy tests on the real node: helper pods that listen and dial, and an address
outside the cluster that is still on this machine (a network namespace behind a veth pair).

A probe is one bounded connection attempt made inside a pod (``kubectl exec``): ``ok`` (a TCP
connection whose server answered, or a UDP datagram echoed back), ``refused``, or ``timeout`` after
:data:`CONNECT_TIMEOUT` seconds (kube-network-policies drops a denied packet: it is never rejected).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode_config import REAL_NODE_LABEL

ROOT = Path(__file__).resolve().parents[2]
CONNECT_TIMEOUT = 2.0
"""How long a probe waits for an answer: a denied connection is dropped, so it fails after this."""

SERVE = """
import socket, sys, threading, time
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n"); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(512); s.sendto(data, peer)
for spec in sys.argv[1:]:
    proto, port = spec.split("/")
    threading.Thread(target=tcp if proto == "tcp" else udp, args=(int(port),), daemon=True).start()
while True:
    time.sleep(3600)
"""
"""A helper pod's program: for each ``tcp/PORT`` a server that answers one HTTP status line per
connection, for each ``udp/PORT`` an echo."""

PROBE = """
import socket, sys, time
host, port, proto, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
start = time.monotonic()
try:
    if proto == "tcp":
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            answered = s.recv(64)
        print("ok" if answered else "closed", end="")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.sendto(b"probe", (host, port)); s.recvfrom(512)
        print("ok", end="")
except socket.timeout:
    print("timeout", end="")
except ConnectionRefusedError:
    print("refused", end="")
except OSError as error:
    print("error:" + str(error.errno), end="")
print(" %.2f" % (time.monotonic() - start))
"""


@dataclass(frozen=True)
class Attempt:
    """One probe's outcome and how long it took."""

    outcome: str
    seconds: float


def probe(cp: ControlPlane, pod: str, namespace: str, host: str, port: int, proto: str = "tcp",
          container: str | None = None) -> Attempt:  # fmt: skip
    """One connection attempt from inside ``pod`` to ``host:port``."""
    where = ["-c", container] if container else []
    result = cp.kubectl(
        "exec", pod, "-n", namespace, *where, "--", "python3", "-c", PROBE,
        host, str(port), proto, str(CONNECT_TIMEOUT), timeout=CONNECT_TIMEOUT + 30,
    )  # fmt: skip
    outcome, seconds = result.stdout.split()
    return Attempt(outcome, float(seconds))


def helper_pod(name: str, image: str, labels: dict[str, str], listen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A pod on the real node that runs :data:`SERVE` for ``listen`` (``tcp/8000``, ``udp/53``) and
    in which probes run; unprivileged ports start at 0 in its network namespace (a DNS stand-in)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {REAL_NODE_LABEL: "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
            "containers": [
                {
                    "name": "helper",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", SERVE, *listen],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                }
            ],
        },
    }


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


@dataclass(frozen=True)
class Outside:
    """A TCP server at ``address:port`` in a network namespace of its own: outside the cluster, on
    this machine (the host routes to it over a veth pair; nothing leaves the machine)."""

    address: str
    port: int


@contextlib.contextmanager
def outside_server(
    subnet: str = "198.51.100.0/30", port: int = 8000, command: Sequence[str] | None = None
) -> Iterator[Outside]:
    """A namespace at the subnet's second address (the host end has the first), its server on ``port``:
    :data:`SERVE`, or ``command`` (run from the repository, in the namespace, until the block ends).

    The subnet is TEST-NET-2's (documentation only, never routed): refused if this machine already
    routes it anywhere but its default route."""
    prefix = subnet.rsplit(".", 1)[0]
    host_address, address = f"{prefix}.1", f"{prefix}.2"
    if "via" not in _run("ip", "route", "get", address).stdout:
        raise RuntimeError(f"{subnet} is in use on this machine")
    token = secrets.token_hex(3)
    name, host_veth, inner_veth = f"chute-np-{token}", f"cnp{token}h", f"cnp{token}i"
    server: subprocess.Popen[bytes] | None = None
    try:
        _run("ip", "netns", "add", name)
        _run("ip", "link", "add", host_veth, "type", "veth", "peer", "name", inner_veth)
        _run("ip", "link", "set", inner_veth, "netns", name)
        _run("ip", "addr", "add", f"{host_address}/30", "dev", host_veth)
        _run("ip", "link", "set", host_veth, "up")
        _run("sysctl", "-q", "-w", f"net.ipv4.conf.{host_veth}.forwarding=1")
        inside = ("ip", "netns", "exec", name)
        _run(*inside, "ip", "addr", "add", f"{address}/30", "dev", inner_veth)
        _run(*inside, "ip", "link", "set", inner_veth, "up")
        _run(*inside, "ip", "route", "add", "default", "via", host_address)
        program = list(command) if command else [sys.executable, "-c", SERVE, f"tcp/{port}"]
        server = subprocess.Popen(  # nosec B603  # fixed command, our own namespace
            [*inside, *program], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while _run(*inside, "ss", "-ltn", f"sport = :{port}").stdout.count("LISTEN") == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the outside server did not listen")
            time.sleep(0.1)
        yield Outside(address, port)
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
