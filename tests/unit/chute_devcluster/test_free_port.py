"""A port for a server of the local cluster or a test: free on every address, and outside the
range the kernel hands out to outgoing connections.

A port taken from that range (binding to port 0) can be given, before the server binds it, to a
client socket of any process: three test sessions side by side make many connections, and an
operator's health server once failed with "address already in use" on such a port.
"""

from __future__ import annotations

import socket

from chute_devcluster.processes import PORT_RANGE, ephemeral_ports, free_port


def test_a_free_port_is_outside_the_ephemeral_range_and_free_on_every_address() -> None:
    low, high = ephemeral_ports()
    for _ in range(50):
        port = free_port()
        assert not low <= port <= high
        assert PORT_RANGE[0] <= port <= PORT_RANGE[1]
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))


def test_a_port_in_use_is_never_returned() -> None:
    with socket.socket() as held:
        held.bind(("0.0.0.0", free_port()))
        taken = held.getsockname()[1]
        assert all(free_port() != taken for _ in range(200))


def test_the_range_stays_below_kubernetes_node_ports() -> None:
    assert PORT_RANGE[1] < 30000  # kube-proxy claims NodePorts (30000-32767) on the real node
