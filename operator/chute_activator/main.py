"""``chute-operator activator ARGS`` / ``python -m chute_activator ARGS``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from chute_activator.app import Activator, metrics_app
from chute_activator.config import Config, parse_config
from chute_activator.connections import BoundedServer
from chute_activator.debug import debug_app
from chute_activator.holding import Holder
from chute_activator.metrics import Metrics
from chute_shared import logs
from chute_shared.cluster import ACTIVATOR_FIELD_MANAGER

log = logging.getLogger("chute_activator")


async def serve(config: Config) -> int:
    """Watch the cluster, serve until SIGTERM/SIGINT."""
    from lightkube import AsyncClient, KubeConfig

    from chute_activator.kube import KubeSource

    kube = KubeConfig.from_file(config.kubeconfig) if config.kubeconfig else None
    client = AsyncClient(config=kube, field_manager=ACTIVATOR_FIELD_MANAGER)

    async def wake(key: tuple[str, str]) -> None:
        await source.wake(key)

    holder = Holder(
        wake,
        Metrics(),
        queue_limit=config.queue_limit,
        unknown_limit=config.unknown_limit,
        max_wait_seconds=config.max_wait_seconds,
        wake_interval_seconds=config.wake_interval_seconds,
        default_retry_after=config.default_retry_after,
    )
    source = KubeSource(client, holder, config.namespaces, config.test_only_endpoints)
    activator = Activator(
        holder,
        max_body_bytes=config.max_body_bytes,
        max_held_body_bytes=config.max_held_body_bytes,
        request_timeout=config.request_timeout_seconds,
        body_timeout=config.body_timeout_seconds,
    )
    await activator.start()
    server = BoundedServer(
        activator.handle,
        head_timeout=config.head_timeout_seconds,
        max_connections=config.max_connections,
        handler_cancellation=True,
    )
    serving = web.ServerRunner(
        server,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout_seconds,
    )
    await serving.setup()
    listening, taken = listen_on_range(config.host, config.chute_ports)
    holder.metrics.unavailable_ports.set(len(taken))
    for sock in listening:
        await web.SockSite(serving, sock).start()
    admin = web.AppRunner(metrics_app(holder), access_log=None)
    await admin.setup()
    await web.TCPSite(admin, config.host, config.metrics_port).start()
    debug = web.AppRunner(debug_app(holder), access_log=None)
    await debug.setup()
    if config.debug_port is not None:
        await web.TCPSite(debug, config.debug_host, config.debug_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the first listing, which may take long
        loop.add_signal_handler(sig, stop.set)
    if await _started(source.start(), stop):
        log.info(
            "activator started",
            extra={"chute_ports": "{}-{}".format(*config.chute_ports), "metrics_port": config.metrics_port},
        )
        await stop.wait()
    await drain(holder, config.drain_seconds)
    await serving.cleanup()  # no new connections; forwarded requests get the shutdown timeout
    await admin.cleanup()
    await debug.cleanup()
    await source.stop()
    await activator.close()
    with contextlib.suppress(Exception):
        await client.close()
    return 0


FILES_BEYOND_PORTS = 4096
"""Open files the activator needs besides its listening sockets: clients' and replicas' connections."""


def listen_on_range(host: str, ports: tuple[int, int]) -> tuple[list[socket.socket], list[int]]:
    """A listening socket on every port of ``ports`` it can bind (the open-file limit raised to fit
    them, up to its hard limit), and the ports it could not: another process has them, so the Chutes
    given them cannot be reached at zero through this activator (logged, and counted in
    ``chute_activator_unavailable_ports``), while every other Chute still can."""
    first, last = ports
    needed = last - first + 1 + FILES_BEYOND_PORTS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        if limit < needed:
            raise SystemExit(
                f"--chute-ports {first}-{last} needs {needed} open files; the hard limit is {hard}"
            )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    taken: list[int] = []
    for port in range(first, last + 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            taken.append(port)
            continue
        sock.listen(1024)
        sock.setblocking(False)
        sockets.append(sock)
    if taken:
        log.error(
            "ports of --chute-ports taken by another process: their Chutes cannot be reached at zero here",
            extra={"host": host, "ports": taken[:20], "count": len(taken)},
        )
    return sockets, taken


async def _started(starting: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run the source's first listing until it is done (True) or a signal comes first (False: the
    listing is abandoned, and what was held meanwhile is drained like the rest)."""
    start = asyncio.ensure_future(starting)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait((start, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if start.done():
        start.result()
        return True
    start.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await start
    return False


async def drain(holder: Holder, seconds: float) -> None:
    """SIGTERM: unready at once (``/readyz`` 503) while still listening, forwarding and holding for
    ``seconds``: kube-proxy sends new connections here until the operator has re-read the activator's
    endpoints (every 5 s) and rewritten each Chute's slice, and kube-proxy has synced. Then what is
    still held is answered 503 with Retry-After."""
    holder.drain()
    log.info("activator draining", extra={"drain_seconds": seconds})
    await asyncio.sleep(seconds)
    log.info("activator stopping")
    holder.stop_holding()


def main(argv: list[str]) -> int:
    config = parse_config(argv)
    logs.configure(config.log_level)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
