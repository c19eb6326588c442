"""Probes of the machine's network for tests: is an address kept on this machine, and dial it only then.

``dial(address, port)`` refuses to send anything unless :func:`kept_on_machine` holds (an unreachable
route, the guard's REJECT rule, or a route to a non-default interface such as a real node's bridge),
so a test can never send a packet off the machine by mistake.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
from dataclasses import dataclass

from chute_devcluster.netguard import (
    FORWARD_CHAIN,
    JUMPS,
    OUTPUT_CHAIN,
    ROUTE_PROTOCOL,
    default_route_interfaces,
    machine_routes,
)


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def route_get(address: str) -> subprocess.CompletedProcess[str]:
    """``ip -j route get ADDRESS``: exit code 2 and "No route to host" under an unreachable route."""
    return _run("ip", "-j", "route", "get", address)


def route_device(address: str) -> str | None:
    """The interface the kernel would send to ``address`` by; None when it is unreachable."""
    result = route_get(address)
    if result.returncode != 0:
        return None
    routes = json.loads(result.stdout or "[]")
    return str(routes[0].get("dev")) if routes else None


def rejected_by_guard(address: str) -> bool:
    """Whether the guard's OUTPUT chain (jumped to from OUTPUT) rejects packets to ``address``."""
    jump = _run("iptables", "-w", "-S", "OUTPUT").stdout
    if f"-j {OUTPUT_CHAIN}" not in jump:
        return False
    target = ipaddress.IPv4Address(address)
    for line in _run("iptables", "-w", "-S", OUTPUT_CHAIN).stdout.splitlines():
        words = line.split()
        if "-d" in words and "REJECT" in words:
            destination = ipaddress.IPv4Network(words[words.index("-d") + 1])
            if target in destination:
                return True
    return False


def kept_on_machine(address: str) -> bool:
    """A packet from this host to ``address`` cannot leave by a default route's interface."""
    device = route_device(address)
    return (
        device is None
        or rejected_by_guard(address)
        or device not in default_route_interfaces(machine_routes())
    )


@dataclass(frozen=True)
class DialResult:
    error: OSError | None
    seconds: float

    @property
    def connected(self) -> bool:
        return self.error is None


def dial(address: str, port: int = 80, timeout: float = 1.0) -> DialResult:
    """One TCP connect, only if ``address`` is kept on this machine (else AssertionError, nothing sent)."""
    if not kept_on_machine(address):
        raise AssertionError(f"{address} is not kept on this machine: not dialing it")
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return DialResult(None, time.monotonic() - started)
    except OSError as error:
        return DialResult(error, time.monotonic() - started)


def network_state() -> set[str]:
    """Every IPv4 route (all tables) and filter-table iptables rule, one line each."""
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
    rules = _run("iptables", "-w", "-S").stdout.splitlines()
    return {line.strip() for line in routes + rules if line.strip() and not line.startswith("#")}


def guard_lines(lines: set[str]) -> set[str]:
    """The lines of :func:`network_state` that the network guard adds."""
    chains = {chain for _, chain in JUMPS} | {OUTPUT_CHAIN, FORWARD_CHAIN}
    return {line for line in lines if f"proto {ROUTE_PROTOCOL}" in line or any(c in line for c in chains)}
