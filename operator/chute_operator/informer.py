"""List one kind in one namespace, then watch it from that listing: the operator's own informer.

As client-go's reflector: a paged LIST, handed over whole (the store made to agree with it: what it
lacks was deleted), then a watch from the listing's resourceVersion, each event handed over as it
arrives; a watch the API server ends is resumed from the last version seen (bookmarks keep it
recent), and one that cannot resume (410 Gone: the API server restarted, or the gap outlived its
watch cache) is replaced by a new listing, so that an object deleted in the gap is forgotten. A kind
the API server does not serve (a CRD not installed yet) lists as empty and is listed again later.

kopf watched these kinds before: its watch streams and per-object workers were 37% of the operator's
samples while 1000 Chutes came up (a py-spy profile, docs/benchmarks/operator.md), for events the
controller only stores and queues.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from chute_operator.kube import LIST_PATHS, ApiFailure, KubeApi, error_message
from chute_operator.transport import ApiTransport

log = logging.getLogger(__name__)

Listed = Callable[[str, str, list[dict[str, Any]], str], None]
"""Called with the kind, the namespace (``""``: all), every object listed and the listing's version."""
Observed = Callable[[str, str, dict[str, Any]], None]
"""Called with the kind, the event's type (ADDED, MODIFIED, DELETED) and the object."""

BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""The waits after consecutive failures (the last one repeated), each with up to 20% of jitter: the
informers of every kind and namespace fail together when the API server restarts, and must not all
come back at the same instant."""
UNSERVED_SECONDS = 10.0
"""How long a kind the API server does not serve waits before it is listed again."""
SHORT_WATCH_SECONDS = 1.0
"""A watch that ends sooner than this at the version it started from counts as a failure (backed
off): a proxy or server that closes every watch at once must not make a busy loop."""
RELIST_AFTER = 3
"""Failures in a row at one version (refusals aside) after which the informer lists again instead
of resuming its watch."""
GONE = 410


def _backoff(failures: int) -> float:
    wait = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1]
    return wait * (1 + 0.2 * random.random())  # nosec B311  # jitter, not a secret


class Informer:
    """Lists, then watches, ``kind`` in ``namespace`` (``""``: all) with the label selector ``labels``."""

    def __init__(
        self,
        api: KubeApi,
        transport: ApiTransport,
        kind: str,
        namespace: str,
        labels: dict[str, Any] | None,
        listed: Listed,
        observed: Observed,
        server_seconds: int = 300,
        read_seconds: float = 330.0,
    ) -> None:
        """``server_seconds``: how long the API server keeps a watch open before it ends it;
        ``read_seconds``: the longest silence read before the connection counts as broken."""
        self.api, self.transport = api, transport
        self.kind, self.namespace, self.labels = kind, namespace, labels
        self._listed, self._observed = listed, observed
        self.server_seconds, self.read_seconds = server_seconds, read_seconds
        self.synced = asyncio.Event()
        """Set once the first listing has been handed over."""
        self.listings = 0
        """How many listings have been handed over (the first, then one per watch that could not resume)."""
        self.version = ""
        """The last resourceVersion seen (a listing's, then each event's); empty: list next."""
        self._served = False
        self._unserved_once = False

    async def run(self) -> None:
        """List and watch until cancelled. A failure is logged and retried after a backoff, from the
        last version seen. Failures are counted at one version: a watch that made progress before it
        broke (a proxy that cuts long streams) starts the count again. After RELIST_AFTER failures at
        one version (a version the API server will not resume from, an event that cannot be read) the
        informer lists again; a refusal (403, 429) is not the version's fault and only waits, at
        least as long as a Retry-After asks."""
        failures, stuck = 0, 0
        while True:
            watched_from = self.version
            try:
                if stuck >= RELIST_AFTER:
                    self.version, stuck = "", 0
                if not self.version:
                    self.version = await self._list()
                    if not self.version:  # not served: nothing to watch
                        await asyncio.sleep(UNSERVED_SECONDS)
                        continue
                watched_from, began = self.version, time.monotonic()
                await self._watch()
                if self.version == watched_from and time.monotonic() - began < SHORT_WATCH_SECONDS:
                    raise ApiFailure("the watch ended at once, at the version it started from", 0)
                failures = stuck = 0
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.version and self.version != watched_from:
                    failures = stuck = 0  # it made progress before it broke
                failures += 1
                code = error.code if isinstance(error, ApiFailure) else None
                if code in (GONE, 404):
                    log.info("the watch of %s could not resume: listing them again", self._what())
                    self.version = ""
                elif code not in (403, 429):
                    stuck += 1
                level = (
                    logging.ERROR
                    if not self.synced.is_set() and failures >= RELIST_AFTER
                    else logging.WARNING
                )
                log.log(level, "watching %s: %s (failure %d)", self._what(), error_message(error), failures)
                retry_after = error.retry_after if isinstance(error, ApiFailure) else None
                await asyncio.sleep(max(_backoff(failures), retry_after or 0.0))

    async def _list(self) -> str:
        """List, and hand the listing over; its version (empty: the kind is not served). A kind that
        was served is handed over as empty (its objects forgotten) only when read so twice in a row:
        an API server that has just started may not serve a CRD's kind yet."""
        objects, version = await self.api.listing(
            self.kind, (self.namespace,) if self.namespace else (), self.labels
        )
        if not version and self._served and not self._unserved_once:
            self._unserved_once = True
            return version
        self.listings += 1
        try:
            self._listed(self.kind, self.namespace, objects, version)
        except Exception:
            self.listings -= 1
            raise
        self._served, self._unserved_once = bool(version), False
        self.synced.set()
        return version

    async def _watch(self) -> None:
        """Hand over the events after the last version seen until the watch ends. An ERROR event
        raises its failure (code 410 when the version is too old to resume from)."""
        api_version = LIST_PATHS[self.kind][0]
        async for event in self.api.watch(
            self.transport,
            self.kind,
            self.namespace,
            self.labels,
            self.version,
            self.server_seconds,
            self.read_seconds,
        ):
            kind, obj = event.get("type"), event.get("object")
            if not isinstance(obj, dict):
                continue
            if kind == "ERROR":
                code, message = obj.get("code"), str(obj.get("message") or obj.get("reason") or "")
                if obj.get("reason") in ("Expired", "Gone"):
                    code = GONE
                raise ApiFailure(message or "an error event", code if isinstance(code, int) else 0)
            self.version = str((obj.get("metadata") or {}).get("resourceVersion") or self.version)
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK: only its version
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", self.kind)
            try:
                self._observed(self.kind, kind, obj)
            except Exception:  # the periodic resync hands it over again; the watch goes on
                log.exception("an event of %s could not be taken", self._what())

    def _what(self) -> str:
        return f"{self.kind} in {self.namespace}" if self.namespace else f"{self.kind} (all namespaces)"
