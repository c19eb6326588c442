"""Load generators for the sidecar benchmark (Debian's wrk has no fixed-rate mode).

``rate URL RATE SECONDS``: open loop at a fixed request rate over a pool of keep-alive connections
that grows when every connection is busy, so a slow server never delays the next send. Latency is
measured from the moment the request is written to the moment its last byte arrives (a raw asyncio
protocol on uvloop, Content-Length responses only). Prints one JSON object.

``sse URL STREAMS``: that many concurrent streams at once; per stream the time to the first event and
the gaps between events. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import uvloop


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds, plus the max."""
    if not values:
        return {}
    ordered = sorted(values)
    result = {
        f"p{point:g}": ordered[min(len(ordered) - 1, int(len(ordered) * point / 100))] * 1000
        for point in points
    }
    result["max"] = ordered[-1] * 1000
    result["mean"] = sum(ordered) / len(ordered) * 1000
    return {key: round(value, 4) for key, value in result.items()}


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, generator: RateGenerator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need: int | None = None
        self.status = 0
        self.sent_at = 0.0
        self.busy = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop: not a subclass

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.busy = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            length = 0
            start = head.find(b"content-length:")
            if start >= 0:
                stop = head.find(b"\r\n", start)
                length = int(head[start + 15 : stop if stop >= 0 else len(head)])
            self.need = end + 4 + length
        if len(self.buffer) >= self.need:
            latency = time.perf_counter() - self.sent_at
            del self.buffer[: self.need]
            self.need = None
            self.busy = False
            self.generator.completed(self, latency, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy:
            self.busy = False
            self.generator.failed(self)


class RateGenerator:
    def __init__(self, url: str, rate: float, seconds: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path or "/"
        self.request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        self.rate = rate
        self.seconds = seconds
        self.idle: list[Connection] = []
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.lag: list[float] = []
        self.opened = 0
        self.outstanding = 0
        self.sending_done = False
        self.all_done = asyncio.Event()

    async def open(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: Connection(self), self.host, self.port)
        self.opened += 1
        return protocol

    def completed(self, connection: Connection, latency: float, status: int) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if not connection.closed:
            self.idle.append(connection)
        self._finish_one()

    def failed(self, connection: Connection) -> None:
        self.errors += 1
        self._finish_one()

    def _finish_one(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and self.sending_done:
            self.all_done.set()

    async def _send_on_new(self) -> None:
        try:
            connection = await self.open()
        except OSError:
            self.errors += 1
            self._finish_one()
            return
        connection.send(self.request)

    async def run(self) -> dict[str, Any]:
        self.idle = [await self.open() for _ in range(16)]
        total = int(self.rate * self.seconds)
        interval = 1.0 / self.rate
        start = time.perf_counter() + 0.05
        tasks = set()
        sent = 0
        while sent < total:
            now = time.perf_counter()
            while sent < total and start + sent * interval <= now:
                self.lag.append(now - (start + sent * interval))
                self.outstanding += 1
                while self.idle and self.idle[-1].closed:
                    self.idle.pop()
                if self.idle:
                    self.idle.pop().send(self.request)
                else:
                    task = asyncio.ensure_future(self._send_on_new())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                sent += 1
            if sent < total:
                await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
        self.sending_done = True
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_done.wait(), 30)
        elapsed = time.perf_counter() - start
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": sent,
            "completed": len(self.latencies),
            "achieved_rps": round(len(self.latencies) / elapsed, 1),
            "errors": self.errors + self.outstanding,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connections_opened": self.opened,
            "latency_ms": percentiles(self.latencies),
            "send_lag_ms": percentiles(self.lag, (50, 99)),
        }


async def sse(url: str, streams: int) -> dict[str, Any]:
    import aiohttp

    ttfb: list[float] = []
    gaps: list[float] = []
    events_per_stream: list[int] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        gate = asyncio.Event()

        async def one() -> None:
            nonlocal errors
            await gate.wait()
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    last = None
                    count = 0
                    while True:
                        event = await response.content.readuntil(b"\n\n")
                        if not event:
                            break
                        now = time.perf_counter()
                        if last is None:
                            ttfb.append(now - started)
                        else:
                            gaps.append(now - last)
                        last = now
                        count += 1
                        if event.startswith(b"data: [DONE]"):
                            break
                    events_per_stream.append(count)
            except (aiohttp.ClientError, TimeoutError):
                errors += 1

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        await asyncio.sleep(0.1)
        wall = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - wall
    return {
        "streams": streams,
        "completed": len(events_per_stream),
        "errors": errors,
        "events": sum(events_per_stream),
        "wall_seconds": round(wall, 3),
        "ttfb_ms": percentiles(ttfb, (50, 99)),
        "gap_ms": percentiles(gaps, (50, 99)),
    }


def main() -> None:
    kind, *args = sys.argv[1:]
    if kind == "rate":
        result = uvloop.run(RateGenerator(args[0], float(args[1]), float(args[2])).run())
    elif kind == "sse":
        result = uvloop.run(sse(args[0], int(args[1])))
    else:
        raise SystemExit(f"unknown mode {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
