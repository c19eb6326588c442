"""Leader election on a coordination.k8s.io Lease: of several operator replicas, one acts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from lightkube import AsyncClient
from lightkube.resources.coordination_v1 import Lease

from chute_operator.kube import ApiFailure, Conflict, NotFound, translated

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
                    held = await self._try_acquire_or_renew()
                except (TimeoutError, ApiFailure, OSError) as error:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                    held = False
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
        if holder and holder != self.identity and not self._expired(spec):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        lease["spec"] = self._spec(acquired, transitions)
        return await _unless_conflict(self.client.replace(_lease(lease)))

    @staticmethod
    def _expired(spec: dict[str, Any]) -> bool:
        renewed = spec.get("renewTime")
        if not renewed:
            return True
        moment = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
        return datetime.now(UTC) > moment + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 15))

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
        except (ApiFailure, OSError) as error:
            log.info("lease not released: %s", error)
