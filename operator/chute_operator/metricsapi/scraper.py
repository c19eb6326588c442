"""Reads every ready pod's sidecar ``/_conn_stats`` in the background, so answers are a lookup.

Bounded: at most ``concurrency`` reads at once, each within ``timeout`` seconds, connections kept
alive between rounds. Which pods are read is :func:`chute_operator.metricsapi.targets.plan`'s
decision (never pods on simulated nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from chute_operator.metricsapi.samples import PodKey, Sample, Samples, parse_conn_stats, parse_idle_seconds
from chute_operator.metricsapi.targets import SKIPPED_NODE_UNKNOWN, Target, is_loopback, plan
from chute_shared.paths import CONN_STATS_PATH

log = logging.getLogger(__name__)

NodeLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
"""Fetches a Node object by name (None when it does not exist)."""


@dataclass
class NodeKinds:
    """Whether each node is simulated, looked up once per node and remembered for ``ttl`` seconds."""

    lookup: NodeLookup
    is_simulated: Callable[[dict[str, Any]], bool]
    ttl: float = 300.0
    retry_after: float = 30.0
    """A failed lookup (API unreachable, no RBAC for nodes) is tried again only after this long."""
    clock: Callable[[], float] = time.monotonic
    _known: dict[str, tuple[float, bool]] = field(default_factory=dict)
    _failed: dict[str, float] = field(default_factory=dict)

    def simulated(self, name: str) -> bool | None:
        """True/False when known, None when not looked up yet (or unknowable: then never dialled)."""
        known = self._known.get(name)
        return None if known is None else known[1]

    async def learn(self, names: Iterable[str]) -> None:
        """Look up the nodes not known (or known too long ago)."""
        now = self.clock()
        for name in sorted(set(names)):
            known = self._known.get(name)
            if not name or (known is not None and now - known[0] < self.ttl):
                continue
            if now - self._failed.get(name, float("-inf")) < self.retry_after:
                continue
            try:
                node = await self.lookup(name)
            except Exception as error:
                log.warning("looking up node %s (its pods are not read meanwhile): %s", name, error)
                self._failed[name] = now
                continue
            if node is None:  # gone: as unknowable as a failed lookup
                self._known.pop(name, None)
                self._failed[name] = now
            else:
                self._failed.pop(name, None)
                self._known[name] = (now, self.is_simulated(node))


def read_address_overrides(path: str | None) -> dict[str, str]:
    """TEST ONLY: ``{"namespace/pod": "127.0.0.1:port"}`` from a JSON file; loopback entries only."""
    if not path:
        return {}
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        log.warning("test-only sidecar address file %s unreadable: %s", path, error)
        return {}
    if not isinstance(document, dict):
        return {}
    return {str(k): str(v) for k, v in document.items() if is_loopback(str(v))}


class Scraper:
    """Keeps :attr:`samples` fresh for the pods ``pods()`` returns; :attr:`reasons` says why not."""

    def __init__(
        self,
        pods: Callable[[], Iterable[Mapping[str, Any]]],
        nodes: NodeKinds,
        samples: Samples,
        *,
        interval: float = 2.0,
        timeout: float = 1.0,
        concurrency: int = 16,
        test_only_address_file: str | None = None,
        pod_of: Callable[[PodKey], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.pods, self.nodes, self.samples = pods, nodes, samples
        self.pod_of = pod_of or self._scan
        """One pod of ``pods()`` by key (a store's lookup; by default a scan of ``pods()``)."""
        self.interval, self.timeout, self.concurrency = interval, timeout, concurrency
        self.test_only_address_file = test_only_address_file
        self.reasons: dict[PodKey, str] = {}
        """Why each pod of the last round has no reading (skipped, or its read failed)."""
        self.read = 0
        """Pods read successfully in the last round."""
        self.reads: Counter[str] = Counter()
        """Reads since start, by result: ``ok`` or ``failed``."""
        self.rounds = 0
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        """Each address of the last round's targets, its URL (kept for the next round only)."""
        self._overrides: tuple[tuple[int, int, int] | None, dict[str, str]] = (None, {})

    async def run(self) -> None:
        """Scrape every ``interval`` seconds until cancelled."""
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.scrape_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("scrape round failed")
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # No proxy from the environment: pod addresses are never sent through one.
                trust_env=False,
            )
        return self._session

    async def _plan(self, pods: list[Mapping[str, Any]]) -> tuple[list[Target], dict[PodKey, str]]:
        """:func:`plan`, after looking up the nodes not known yet."""
        overrides = self._address_overrides()
        targets, skipped = plan(pods, self.nodes.simulated, overrides)
        if SKIPPED_NODE_UNKNOWN in skipped.values():  # look those nodes up, then plan again
            unknown = {
                (pod.get("spec") or {}).get("nodeName") or ""
                for pod in pods
                if skipped.get(_key(pod)) == SKIPPED_NODE_UNKNOWN
            }
            await self.nodes.learn(unknown)
            targets, skipped = plan(pods, self.nodes.simulated, overrides)
        return targets, skipped

    async def read_now(self, pods: Iterable[Mapping[str, Any]], limit: int = 64) -> None:
        """Read these pods' sidecars now, at most ``limit`` of them (a replica asked about a Chute
        whose pods it does not read every round)."""
        targets, _ = await self._plan(list(pods)[:limit])
        bound = asyncio.Semaphore(self.concurrency)

        async def one(target: Target) -> None:
            async with bound:
                await self._read(target)

        await asyncio.gather(*(one(target) for target in targets))

    async def scrape_once(self) -> None:
        pods = list(self.pods())
        targets, skipped = await self._plan(pods)
        self._urls = {t.address: self._url(t.address) for t in targets}
        reasons = dict(skipped)
        limit = asyncio.Semaphore(self.concurrency)

        async def read(target: Target) -> None:
            async with limit:
                error = await self._read(target)
            if error:
                reasons[(target.namespace, target.name)] = error

        await asyncio.gather(*(read(target) for target in targets))
        self.samples.retain((t.namespace, t.name) for t in targets)
        failed = len(reasons) - len(skipped)
        self.reads.update(ok=len(targets) - failed, failed=failed)
        self.read = len(targets) - failed
        self.reasons = reasons
        self.rounds += 1

    async def idle_now(self, namespace: str, name: str) -> float | None:
        """Read one pod's sidecar now, not from the last round: its own ``idle_secs``. None while it
        serves, when the read fails, or for a pod a round would skip (not ready, simulated)."""
        pod = self.pod_of((namespace, name))
        if pod is None:
            return None
        targets, _ = plan([pod], self.nodes.simulated, self._address_overrides())
        if not targets:
            return None
        began = time.monotonic()
        if await self._read(targets[0]) is not None:
            return None
        sample = self.samples.fresh((namespace, name), began)
        return sample.idle_seconds if sample is not None and sample.read_at >= began else None

    def _url(self, address: str) -> URL:
        """The sidecar's stats URL, built once per address (yarl parses a host string each time)."""
        url = self._urls.get(address)
        if url is None:
            url = self._urls[address] = URL(f"http://{address}{CONN_STATS_PATH}", encoded=True)
        return url

    def _address_overrides(self) -> dict[str, str]:
        """TEST ONLY: the address file's entries, read again only when the file changes (a round of
        1000 pods spent more CPU parsing it than reading their sidecars)."""
        path = self.test_only_address_file
        if not path:
            return {}
        try:
            stat = Path(path).stat()
        except OSError:
            stamp = None
        else:
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp is None or stamp != self._overrides[0]:
            self._overrides = (stamp, read_address_overrides(path))
        return self._overrides[1]

    def _scan(self, key: PodKey) -> Mapping[str, Any] | None:
        return next((pod for pod in self.pods() if _key(pod) == key), None)

    async def _read(self, target: Target) -> str | None:
        """Read one sidecar; returns why it failed, or None."""
        url = self._url(target.address)
        try:
            async with self._client().get(url, allow_redirects=False) as response:
                if response.status != 200:
                    return f"sidecar answered {response.status}"
                document = await response.json(content_type=None)
            utilization = parse_conn_stats(document)
        except TimeoutError:
            return f"sidecar did not answer within {self.timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return f"sidecar unreadable: {error or type(error).__name__}"
        self.samples.record(
            (target.namespace, target.name),
            Sample(utilization, time.monotonic(), time.time(), parse_idle_seconds(document)),
        )
        return None


def _key(pod: Mapping[str, Any]) -> PodKey:
    meta = pod.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


@contextlib.asynccontextmanager
async def running(scraper: Scraper) -> Any:
    """Run the scraper in the background for the duration of the block."""
    task = asyncio.create_task(scraper.run(), name="metrics-scraper")
    try:
        yield scraper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
