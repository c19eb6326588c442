"""A light stand-in for many sidecars: one process answering ``GET /_conn_stats`` on many loopback
addresses, for the scraper's and the fleet's benchmarks (kwok pods reach it through the metrics API's
test-only address map).

Each address of ``127.B.x.y`` (one listener per address, one port for all) answers every request on a
connection with the sidecar's document (chute_sidecar ``Proxy.stats``: the limiter's fields and
``ready``), HTTP/1.1 keep-alive. The first ``--busy`` addresses report one request in flight
(``idle_secs`` null); the others have been idle for ``--idle-seconds``. Loopback only.

    .venv/bin/python benchmarks/stats_farm.py --addresses 1000 --ready-file /tmp/farm.json

Writes ``{"addresses": [...], "port": P}`` to ``--ready-file`` once every listener is bound, then serves
until SIGTERM (or ``--seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
from collections.abc import Callable
from pathlib import Path

from chute_devcluster.processes import free_port
from chute_shared import paths

CONCURRENCY = 4


def document(busy: bool, idle_seconds: float) -> bytes:
    """The sidecar's ``/_conn_stats`` body (same fields and order as chute_sidecar's)."""
    in_flight = 1 if busy else 0
    return json.dumps(
        {
            paths.CONCURRENCY: CONCURRENCY,
            paths.IN_FLIGHT: in_flight,
            paths.AVAILABLE: CONCURRENCY - in_flight,
            paths.UTILIZATION: round(in_flight / CONCURRENCY, 4),
            paths.OLDEST_IN_FLIGHT_AGE: 1.5 if busy else None,
            paths.IDLE: None if busy else idle_seconds,
            paths.READY: True,
        },
        separators=(",", ":"),
    ).encode()


def response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Answer(asyncio.Protocol):
    """Answers each request head on the connection with one fixed response (requests have no body)."""

    def __init__(self, answer: bytes) -> None:
        self.answer, self.buffer = answer, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 65536:  # not a client of ours
            if self.transport is not None:
                self.transport.close()
            return
        heads = self.buffer.count(b"\r\n\r\n")
        if heads and self.transport is not None:
            self.transport.write(self.answer * heads)
            self.buffer = self.buffer.rsplit(b"\r\n\r\n", 1)[1]


def _factory(answer: bytes) -> Callable[[], Answer]:
    return lambda: Answer(answer)


def addresses(base: int, count: int) -> list[str]:
    """``count`` addresses of 127.base.0.0/16 (no .0 or .255 last octet)."""
    return [f"127.{base}.{i // 250}.{i % 250 + 1}" for i in range(count)]


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    busy = response(document(True, args.idle_seconds))
    idle = response(document(False, args.idle_seconds))
    servers: list[asyncio.Server] = []
    for _ in range(20):  # bounded: another loopback /16 when one of its addresses is taken
        base, port = random.randint(2, 250), free_port()  # nosec B311  # not a secret
        listed = addresses(base, args.addresses)
        try:
            for i, host in enumerate(listed):
                servers.append(
                    await loop.create_server(_factory(busy if i < args.busy else idle), host, port)
                )
            break
        except OSError:
            for server in servers:
                server.close()
            servers = []
    else:
        raise SystemExit("no free loopback /16 for the farm after 20 tries")
    Path(args.ready_file).write_text(json.dumps({"addresses": listed, "port": port}))  # noqa: ASYNC240
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.seconds)
    for server in servers:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addresses", type=int, required=True)
    parser.add_argument(
        "--busy", type=int, default=0, help="the first N addresses report a request in flight"
    )
    parser.add_argument("--idle-seconds", type=float, default=100000.0)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--seconds", type=float, default=3600.0, help="serve at most this long")
    args = parser.parse_args()
    if not 0 < args.addresses <= 250 * 256:
        raise SystemExit("--addresses: 1 to 64000")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
