"""Leader election on a coordination.k8s.io Lease: of several operator replicas, one acts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from lightkube import AsyncClient
from lightkube.resources.coordination_v1 import Lease

from chute_operator.kube import ApiFailure, Conflict, NotFound, Unanswered, translated

log = logging.getLogger(__name__)


def _lease(body: dict[str, Any]) -> Lease:
    return cast(Lease, Lease.from_dict(body))


async def _unless_conflict(write: Awaitable[object]) -> bool:
    """Whether the write went through; False when another replica wrote first (409)."""
    try:
        async with translated():
            await write
    except Conflict:
        return False
    return True


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires and renews a Lease; :attr:`is_leader` is true only while the lease is surely ours."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew_every: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.duration, self.renew_every = duration, renew_every
        self.on_change = on_change
        self._valid_until = 0.0
        self._leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    @property
    def is_leader(self) -> bool:
        """Ours, with a safety margin: we stop acting well before another replica may start."""
        return self._leading and time.monotonic() < self._valid_until

    async def run(self) -> None:
        """Keep trying to acquire or renew until cancelled; releases the lease on the way out."""
        try:
            while True:
                started = time.monotonic()
                try:
                    held = await asyncio.wait_for(self._try_acquire_or_renew(), self.duration / 2)
                except (TimeoutError, ApiFailure, Unanswered, OSError) as error:
                    log.warning("lease %s/%s: %s: %s", self.namespace, self.name, type(error).__name__, error)
                    held = False
                if self._leading and not self.is_leader:
                    # The lease lapsed while we could not renew it: report the gap, so that regaining it
                    # is a change too (on_change(True) re-queues whatever was skipped meanwhile).
                    self._set_leading(False)
                if held:
                    self._valid_until = started + self.duration * 2 / 3
                self._set_leading(held or self.is_leader)
                await asyncio.sleep(self.renew_every)
        finally:
            await self._release()

    def _set_leading(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            log.info("leadership %s (%s)", "acquired" if leading else "lost", self.identity)
            if self.on_change:
                self.on_change(leading)

    def _spec(self, acquired: str | None = None, transitions: int = 0) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def _try_acquire_or_renew(self) -> bool:
        try:
            async with translated():
                lease = (await self.client.get(Lease, self.name, namespace=self.namespace)).to_dict()
        except NotFound:
            body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec()}
            return await _unless_conflict(self.client.create(_lease(body)))
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        self._observe(lease)
        if holder and holder != self.identity and not self._expired(spec):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        lease["spec"] = self._spec(acquired, transitions)
        return await _unless_conflict(self.client.replace(_lease(lease)))

    def _observe(self, lease: dict[str, Any]) -> None:
        """Note when the lease record last changed, by our own clock (as client-go does)."""
        spec = lease.get("spec") or {}
        record = (
            (lease.get("metadata") or {}).get("resourceVersion"),
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseTransitions"),
        )
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()

    def _expired(self, spec: dict[str, Any]) -> bool:
        """Whether the holder let a whole lease duration pass, on our clock, without renewing.

        The holder writes ``renewTime`` with its own clock, which need not agree with ours: it is
        only compared with itself (has it changed?), never with our time.
        """
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        return time.monotonic() > self._observed_at + duration

    async def _release(self) -> None:
        """Hand over at once on a clean shutdown (holder cleared), as controller-runtime does."""
        if not self._leading:
            return
        self._set_leading(False)
        try:
            async with translated():
                lease = (await self.client.get(Lease, self.name, namespace=self.namespace)).to_dict()
                if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                    lease["spec"]["holderIdentity"] = None
                    lease["spec"]["leaseDurationSeconds"] = 1
                    await self.client.replace(_lease(lease))
        except (ApiFailure, Unanswered, OSError) as error:
            log.info("lease not released: %s", error)
