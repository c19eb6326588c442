"""From a pod-like network namespace, the guard's FORWARD rules stop what would leave the machine.

A namespace on a veth pair, in a pod range of its own (declared as a node subnet), forwarding on
for its host end only (``net.ipv4.conf.<veth>.forwarding``, never the machine-wide switch). Before
anything is sent, a second, independent net is put in place: a DROP in mangle POSTROUTING for the
range out of the default route's interfaces, which runs after filter FORWARD. If the guard works,
the connect fails at once and that net never sees a packet; if not, the net drops it and the test
fails on a timeout: nothing leaves the machine either way.
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.integration.test_network_guard import free_ranges, unused_address
from tests.net_helpers import route_device

from chute_devcluster.netguard import (
    FORWARD_CHAIN,
    NetworkGuard,
    default_route_interfaces,
    machine_routes,
)

pytestmark = pytest.mark.integration
SAFETY_COMMENT = "chute-operator test: safety net behind the guard"
PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(1.0)
try:
    s.connect((sys.argv[1], 80)); print("connected")
except TimeoutError:
    print("timeout")
except OSError as e:
    print(e.errno)
"""


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)


@dataclass(frozen=True)
class PodNamespace:
    name: str
    host_veth: str
    pod_cidr: str
    service_cidr: str
    interfaces: tuple[str, ...]

    def connect(self, address: str, attempts: int = 3) -> str:
        """errno (as text), "timeout" or "connected" of a TCP connect from inside the namespace: the
        first answer that is not a timeout, of at most ``attempts`` (the kernel rate-limits the ICMP
        errors a REJECT sends, machine-wide: a busy machine may swallow one; a packet that got past
        the guard is still caught by the safety net's counter)."""
        answer = "timeout"
        for _ in range(attempts):
            command = ("ip", "netns", "exec", self.name, sys.executable, "-c", PROBE, address)
            answer = run(*command).stdout.strip()
            if answer != "timeout":
                break
        return answer


def safety_net(pod_cidr: str, interface: str) -> tuple[str, ...]:
    comment = ("-m", "comment", "--comment", SAFETY_COMMENT)
    return ("POSTROUTING", "-s", pod_cidr, "-o", interface, *comment, "-j", "DROP")


def packets(table: str, chain: str, *needles: str) -> int:
    """Packets counted by the rules of ``chain`` whose listing contains every needle."""
    listing = run("iptables", "-w", "-t", table, "-L", chain, "-n", "-v", "-x").stdout
    return sum(int(line.split()[0]) for line in listing.splitlines() if all(n in line for n in needles))


@pytest.fixture
def pod_namespace() -> Iterator[PodNamespace]:
    pod_cidr, service_cidr = free_ranges()
    subnet = next(ipaddress.IPv4Network(pod_cidr).subnets(new_prefix=30))
    host_address, pod_address = list(subnet.hosts())
    interfaces = tuple(default_route_interfaces(machine_routes()))
    token = secrets.token_hex(3)
    name, host_veth, pod_veth = f"chute-guard-{token}", f"cg{token}h", f"cg{token}p"
    guard = NetworkGuard(pod_cidr, service_cidr, node_subnets=(str(subnet),))
    guard.install()
    nets = [safety_net(pod_cidr, interface) for interface in interfaces]
    try:
        for net in nets:
            run("iptables", "-w", "-t", "mangle", "-I", *net[:1], "1", *net[1:])
        run("ip", "netns", "add", name)
        run("ip", "link", "add", host_veth, "type", "veth", "peer", "name", pod_veth)
        run("ip", "link", "set", pod_veth, "netns", name)
        run("ip", "addr", "add", f"{host_address}/{subnet.prefixlen}", "dev", host_veth)
        run("ip", "link", "set", host_veth, "up")
        inside = ("ip", "netns", "exec", name)
        run(*inside, "ip", "addr", "add", f"{pod_address}/{subnet.prefixlen}", "dev", pod_veth)
        run(*inside, "ip", "link", "set", pod_veth, "up")
        run(*inside, "ip", "link", "set", "lo", "up")
        run(*inside, "ip", "route", "add", "default", "via", str(host_address))
        run("sysctl", "-q", "-w", f"net.ipv4.conf.{host_veth}.forwarding=1")
        yield PodNamespace(name, host_veth, pod_cidr, service_cidr, interfaces)
    finally:
        # Deleting the namespace deletes the veth pair.
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        for net in nets:
            subprocess.run(["iptables", "-w", "-t", "mangle", "-D", *net], capture_output=True, check=False)
        guard.remove()


def guard_rules_in_place(namespace: PodNamespace) -> bool:
    rules = run("iptables", "-w", "-S", FORWARD_CHAIN).stdout
    jump = run("iptables", "-w", "-S", "FORWARD").stdout
    return (
        f"-j {FORWARD_CHAIN}" in jump
        and f"-d {namespace.service_cidr}" in rules
        and all(f"-s {namespace.pod_cidr} -o {interface}" in rules for interface in namespace.interfaces)
    )


def test_from_a_pod_namespace_unused_service_and_outside_addresses_fail_at_once(
    pod_namespace: PodNamespace,
) -> None:
    if not pod_namespace.interfaces:
        pytest.skip("this machine has no default route: nothing could leave it")
    assert guard_rules_in_place(pod_namespace), "the guard's FORWARD rules are missing: not sending anything"
    outside = "172.31.255.254"  # a private address off the machine: the default route's way
    assert route_device(outside) in pod_namespace.interfaces

    service_rejects = packets("filter", FORWARD_CHAIN, "REJECT", pod_namespace.service_cidr)
    egress_rejects = packets("filter", FORWARD_CHAIN, "REJECT", pod_namespace.pod_cidr)

    # ENETUNREACH is the guard's icmp-net-unreachable; without forwarding it would be EHOSTUNREACH.
    assert pod_namespace.connect(unused_address(pod_namespace.service_cidr)) == str(errno.ENETUNREACH)
    assert pod_namespace.connect(outside) == str(errno.ENETUNREACH)
    assert packets("filter", FORWARD_CHAIN, "REJECT", pod_namespace.service_cidr) > service_rejects
    assert packets("filter", FORWARD_CHAIN, "REJECT", pod_namespace.pod_cidr) > egress_rejects
    safety = packets("mangle", "POSTROUTING", SAFETY_COMMENT, pod_namespace.pod_cidr)
    assert safety == 0, "a packet got past the guard to the safety net"
