"""The local cluster's processes: started in their own process group, logged to a file, killed
with their parent (whatever killed it), stopped politely and then by force."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_libc: Any = None
with contextlib.suppress(OSError):
    _libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: get killed when the parent (thread) dies, whatever killed it."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


PORT_RANGE = (12000, 19999)
"""Where :func:`free_port` picks: below the kernel's ephemeral range (32768-60999 by default), below
Kubernetes' NodePorts (30000-32767, which kube-proxy claims on the real node) and below the
activator's ports per Chute (20000-29999, which host activators bind)."""
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel hands out to outgoing connections (and to a bind to port 0)."""
    with contextlib.suppress(OSError, ValueError):
        low, high = (int(part) for part in _EPHEMERAL.read_text().split())
        return low, high
    return 32768, 60999


def free_port() -> int:
    """A TCP port free a moment ago on every address, outside the ephemeral range.

    A port from the ephemeral range (a bind to port 0) can be given to a client socket of any
    process before the server binds it: with test sessions side by side an operator's health server
    once failed with "address already in use". Ports here are only ever bound on purpose.
    """
    low, high = ephemeral_ports()
    candidates = [port for port in range(PORT_RANGE[0], PORT_RANGE[1] + 1) if not low <= port <= high]
    # choosing a free port, not a secret (bandit B311)
    for port in random.sample(candidates, min(200, len(candidates))):  # nosec B311
        with socket.socket() as sock:
            try:
                # only checks that the port is free on every address (bandit B104)
                sock.bind(("0.0.0.0", port))  # nosec B104
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {PORT_RANGE[0]}-{PORT_RANGE[1]} after 200 tries")


def free_loopback(ports: tuple[int, int]) -> str:
    """An address of 127.0.0.0/8 (all loopback on Linux) on which ``ports`` are free (a random one; its
    first, middle and last port checked): for
    a host process that listens on a range of ports (an activator), so that several run side by side
    without taking each other's ports or the ones :func:`free_port` hands out."""
    for _ in range(50):
        # choosing a loopback address, not a secret (bandit B311)
        address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"  # nosec B311
        try:
            for port in sorted({ports[0], (ports[0] + ports[1]) // 2, ports[1]}):  # a fresh address: free
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return address
    raise OSError(f"no loopback address with ports {ports[0]}-{ports[1]} free after 50 tries")


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid runs (a zombie does not count)."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass
class Component:
    """One process of the control plane."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
                process_group=0,  # Ctrl-C in a terminal reaches Python, which stops things in order
                preexec_fn=_die_with_parent,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.running():
            assert self.process is not None  # nosec B101  # narrows the type: running() checked it
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    def wait(self, timeout: float) -> None:
        """Wait for the exit; kill after ``timeout`` seconds."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
