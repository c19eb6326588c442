"""The activator listens on every port of its range: a port another process has costs its Chute alone."""

from __future__ import annotations

import socket

from chute_activator.main import listen_on_range
from chute_devcluster.processes import free_loopback

PORTS = (20000, 20009)


def test_every_free_port_of_the_range_is_listened_on_and_a_taken_one_is_reported_not_fatal() -> None:
    host = free_loopback(PORTS)
    with socket.socket() as squatter:
        squatter.bind((host, 20004))
        squatter.listen(1)
        listening, taken = listen_on_range(host, PORTS)
    try:
        assert taken == [20004]
        assert sorted(sock.getsockname()[1] for sock in listening) == [
            p for p in range(20000, 20010) if p != 20004
        ]
    finally:
        for sock in listening:
            sock.close()
