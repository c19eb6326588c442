"""The inference extension's light endpoint picker (``lwepp``) as a host process for one InferencePool.

It reads the pool and its pods from the API server with the kubeconfig it is given (a watch of the
pool's namespace; a pod is an endpoint while it is Ready, at its IP and each of the pool's target
ports), picks round robin (it reads no metrics), and answers Envoy's ext_proc stream with the
chosen ``IP:port`` in ``x-gateway-destination-endpoint``. A pool with no ready pod fails the
stream (gRPC ``Internal``, "no pods available"): it sends no 503 of its own.

Its three servers (ext_proc gRPC, gRPC health, metrics) listen on every address (``:PORT``, not
settable): each gets a port from :func:`chute_devcluster.processes.free_port`; plain gRPC
(``--secure-serving=false``), Envoy reaches it on loopback.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from chute_devcluster.processes import Component, free_port


@dataclass
class Picker:
    """``lwepp`` for the InferencePool ``namespace/pool``; its log in ``log_dir/picker-POOL.log``."""

    binary: Path
    kubeconfig: Path
    namespace: str
    pool: str
    log_dir: Path
    grpc_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    component: Component | None = None

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--pool-name={self.pool}",
            f"--pool-namespace={self.namespace}",
            f"--grpc-port={self.grpc_port}",
            f"--grpc-health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            "--secure-serving=false",
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Start the picker and wait until its ext_proc port accepts connections."""
        log = self.log_dir / f"picker-{self.pool}.log"
        self.component = Component("picker", self.command(), log, {"KUBECONFIG": str(self.kubeconfig)})
        self.component.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.component.running():
                raise RuntimeError(f"the endpoint picker exited:\n{self.component.tail(40)}")
            try:
                socket.create_connection(("127.0.0.1", self.grpc_port), timeout=2).close()
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"the endpoint picker is not listening after {timeout:.0f}s:\n{self.component.tail(40)}"
        )

    def log(self) -> str:
        return self.component.tail(200) if self.component else ""

    def stop(self) -> None:
        if self.component is not None:
            self.component.terminate()
            self.component.wait(10)

    def __enter__(self) -> Picker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
