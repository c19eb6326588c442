"""kopf's CRD observer is a root task: an error there stops the whole operator (rescan.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.clients import errors, scanning
from kopf._core.reactor import observation

import chute_operator.handlers  # noqa: F401  (installs the guard, as `chute-operator run` does)
from chute_operator import rescan

EVENT = {"type": "DELETED", "object": {"spec": {"group": "monitoring.coreos.com"}}}


def _unavailable() -> errors.APIError:
    return errors.APIError(
        {"message": "the server is currently unable to handle the request"}, status=503, headers={}
    )


def test_a_failed_read_of_discovery_after_a_crd_event_does_not_end_kopfs_observer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[str] = []

    async def scan(**_: Any) -> set[Any]:
        reads.append("read")
        if len(reads) == 1:
            raise _unavailable()
        return set()

    monkeypatch.setattr(scanning, "scan_resources", scan)
    monkeypatch.setattr(rescan, "PAUSES", (0.0,))
    handler = observation.process_discovered_resource_event
    assert getattr(handler, "_chute_operator_rescan", False), "the guard is installed with the handlers"
    revised = asyncio.Condition
    insights: Any = type("Insights", (), {})()
    insights.revised = revised()
    insights.backbone = type("Backbone", (), {"fill": staticmethod(lambda **_: asyncio.sleep(0))})()
    monkeypatch.setattr(observation, "revise_resources", lambda **_: None)
    asyncio.run(handler(raw_event=EVENT, settings=None, registry=None, insights=insights))
    assert reads == ["read", "read"]


def test_a_read_that_keeps_failing_is_retried_at_the_last_pause_never_raised() -> None:
    calls: list[int] = []

    async def failing(**_: Any) -> None:
        calls.append(1)
        if len(calls) < 10:
            raise _unavailable()

    guarded = rescan.guarded(failing, pauses=(0.0, 0.0))
    asyncio.run(asyncio.wait_for(guarded(raw_event=EVENT), timeout=5))
    assert len(calls) == 10


def test_a_cancel_is_not_swallowed() -> None:
    async def cancelled(**_: Any) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(rescan.guarded(cancelled)(raw_event=EVENT))
