"""Leader election on the real API server: expiry is judged by this replica's own clock.

The holder's renewTime is written by the holder's clock, which may be hours off ours. As in
client-go, a replica notes *when it saw* the lease record change and takes over only after the
record stayed unchanged for a whole lease duration, measured locally.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.coordination_v1 import Lease

from chute_operator.leader import LeaderElector

pytestmark = pytest.mark.integration
DURATION = 3


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
async def client(control_plane: Any, namespace: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(config=KubeConfig.from_file(control_plane.kubeconfig)) as api:
        yield api


async def _hold(client: AsyncClient, namespace: str, name: str, holder: str, clock: timedelta) -> None:
    """Write the lease as ``holder`` would, with a clock ``clock`` away from ours."""
    now = _micro_time(datetime.now(UTC) + clock)
    spec = {
        "holderIdentity": holder,
        "leaseDurationSeconds": DURATION,
        "acquireTime": now,
        "renewTime": now,
        "leaseTransitions": 0,
    }
    try:
        lease = (await client.get(Lease, name, namespace=namespace)).to_dict()
    except Exception:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        await client.create(cast(Lease, Lease.from_dict(body)))
        return
    lease["spec"] = spec
    await client.replace(cast(Lease, Lease.from_dict(lease)))


async def _leading_after(elector: LeaderElector, seconds: float) -> float | None:
    """Seconds until ``elector`` led, or None if it did not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if elector.is_leader:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def test_a_holder_whose_clock_runs_ahead_and_stops_renewing_is_taken_over(
    client: AsyncClient, namespace: str
) -> None:
    name = f"lease-{secrets.token_hex(3)}"
    await _hold(client, namespace, name, "ahead", clock=timedelta(hours=1))  # then it stops
    elector = LeaderElector(client, namespace, name, "me", duration=DURATION, renew_every=0.5)
    running = asyncio.create_task(elector.run())
    try:
        waited = await _leading_after(elector, DURATION * 4)
        assert waited is not None, "the lease's renewTime is an hour ahead of us; we never took over"
        assert waited >= DURATION - 0.5  # not before a whole lease duration of silence
        lease = (await client.get(Lease, name, namespace=namespace)).to_dict()
        assert lease["spec"]["holderIdentity"] == "me"
        assert lease["spec"]["leaseTransitions"] == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_renewing_holder_whose_clock_runs_behind_keeps_the_lease_until_it_stops(
    client: AsyncClient, namespace: str
) -> None:
    name = f"lease-{secrets.token_hex(3)}"
    behind = timedelta(hours=-1)
    await _hold(client, namespace, name, "behind", clock=behind)
    elector = LeaderElector(client, namespace, name, "me", duration=DURATION, renew_every=0.5)
    running = asyncio.create_task(elector.run())
    try:
        deadline = time.monotonic() + DURATION * 2
        while time.monotonic() < deadline:  # the holder renews every half second, an hour "ago"
            await _hold(client, namespace, name, "behind", clock=behind)
            assert not elector.is_leader, "took a lease that its holder keeps renewing"
            await asyncio.sleep(0.5)
        waited = await _leading_after(elector, DURATION * 4)  # the holder stops without releasing
        assert waited is not None, "never took over a lease nobody renews"
        assert waited >= DURATION - 1.0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
