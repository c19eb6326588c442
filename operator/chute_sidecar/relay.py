"""The model's own Prometheus series (vLLM's ``vllm:*``), relayed on the sidecar's metrics port.

An inference gateway's endpoint picker reads the engine's queue, running requests and KV cache use
from each pod; the metrics port serves them beside the sidecar's in-flight count and 429s, out of
the Services' and routes' reach (the serving port does not proxy the model's ``/metrics`` specially).
Each scrape asks the model once (concurrent scrapes share the one request), bounded in time and size;
the model's series whose names are the sidecar's (``chute_*``) are dropped, so a model cannot speak
for the sidecar (the autoscaler reads those).
"""

from __future__ import annotations

import asyncio
import logging

from yarl import URL

from chute_sidecar.metrics import Metrics
from chute_sidecar.upstream import Exchange, Pool, UpstreamError, request_head

log = logging.getLogger("chute_sidecar.relay")

TIMEOUT_SECONDS = 2.0
"""Longest the model may take to answer its metrics (a picker scrapes often: a slow answer is none)."""
MAX_BYTES = 4 * 1024 * 1024
"""Largest metrics document relayed (vLLM's is some hundreds of KiB); a longer one is dropped whole."""
ACCEPT = (b"Accept", b"text/plain;version=0.0.4;q=1,*/*;q=0.1")
"""The classic text format, which concatenates with the sidecar's (OpenMetrics ends with ``# EOF``)."""
RESERVED_PREFIX = b"chute_"
_DESCRIPTORS = (b"HELP", b"TYPE", b"UNIT")


class RelayFailed(Exception):
    """The model's metrics could not be relayed; ``kind``: one of ``metrics.RELAY_FAILURES``."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind


def _family(line: bytes) -> bytes | None:
    """The metric name a line is about (None: a comment of no family, dropped)."""
    if line.startswith(b"#"):
        parts = line.split(None, 3)
        return parts[2] if len(parts) >= 3 and parts[1] in _DESCRIPTORS else None
    return line.split(b"{", 1)[0].split(None, 1)[0]


def relayable(document: bytes) -> bytes:
    """The model's exposition without blank lines, plain comments, ``# EOF`` and ``chute_*`` families."""
    kept = [
        line
        for line in document.splitlines()
        if line.strip() and (name := _family(line)) is not None and not name.startswith(RESERVED_PREFIX)
    ]
    return b"\n".join(kept) + b"\n" if kept else b""


class EngineMetrics:
    """Fetches the model's metrics document for each scrape of the metrics port."""

    def __init__(
        self,
        upstream: str,
        path: str,
        metrics: Metrics,
        *,
        timeout: float = TIMEOUT_SECONDS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        base = URL(upstream)
        self._host, self._port = base.raw_host or "127.0.0.1", base.port or 80
        self.target = base.raw_path.rstrip("/") + path
        self.metrics, self.timeout, self.max_bytes = metrics, timeout, max_bytes
        self._pool: Pool | None = None
        self._fetching: asyncio.Future[bytes] | None = None
        metrics.enable_relay()

    async def start(self) -> None:
        self._pool = Pool(self._host, self._port, max_idle=1)

    async def close(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def scrape(self) -> bytes:
        """The relayable series now; ``b""`` (and ``chute_engine_metrics_up`` 0) when the model did
        not answer them in time and size. Concurrent callers share one request to the model."""
        if self._fetching is None:
            self._fetching = fetching = asyncio.ensure_future(self._fetch())
            fetching.add_done_callback(self._done)
        return await asyncio.shield(self._fetching)

    def _done(self, fetching: asyncio.Future[bytes]) -> None:
        if self._fetching is fetching:
            self._fetching = None

    async def _fetch(self) -> bytes:
        try:
            document = await self._read()
        except RelayFailed as failed:
            log.debug("engine metrics not relayed", extra={"kind": failed.kind, "error": str(failed)})
            self.metrics.relay_failed(failed.kind)
            return b""
        self.metrics.relay_up.set(1)
        return relayable(document)

    async def _read(self) -> bytes:
        pool = self._pool
        if pool is None:
            raise RelayFailed("connect", "not started")
        head = request_head("GET", self.target, pool.host_header, [ACCEPT])
        try:
            async with asyncio.timeout(self.timeout), Exchange(pool, head, None) as response:
                if response.status != 200:
                    raise RelayFailed("status", f"the model answered {response.status}")
                document = bytearray()
                while chunk := await response.read():
                    document += chunk
                    if len(document) > self.max_bytes:
                        raise RelayFailed("too_large", f"over {self.max_bytes} bytes")
                return bytes(document)
        except TimeoutError:
            raise RelayFailed("timeout", f"no answer within {self.timeout:g}s") from None
        except UpstreamError as error:
            raise RelayFailed("connect", str(error)) from None
