"""Which sidecar a Chute's pods get: keep or update, and at what pace (sidecars.py)."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.sidecars import (
    AUTOMATIC,
    MANUAL,
    SIDECAR_UPDATE_ANNOTATION,
    SidecarChoice,
    SidecarPolicy,
    SidecarUpdates,
    choose,
    update_wanted,
)
from chute_operator.store import slim
from chute_shared.cluster import SIDECAR_CONTAINER

OLD, NEW = "repo:sidecar-old", "repo:sidecar-new"


def _spec(image: str) -> dict[str, Any]:
    return {
        "initContainers": [{"name": SIDECAR_CONTAINER, "image": image}],
        "containers": [{"name": "model"}],
    }


def deployment(image: str, *, rolled_out: bool = True, replicas: int = 1) -> dict[str, Any]:
    ready = replicas if rolled_out else 0
    return {
        "metadata": {"name": "a", "generation": 2},
        "spec": {"replicas": replicas, "template": {"spec": _spec(image)}},
        "status": {
            "observedGeneration": 2 if rolled_out else 1,
            "replicas": replicas,
            "updatedReplicas": ready,
            "availableReplicas": ready,
            "readyReplicas": ready,
        },
    }


def pod(
    image: str, name: str = "a-1", terminating: bool = False, phase: str = "", reason: str = ""
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {key: value for key, value in (("phase", phase), ("reason", reason)) if value}
    return slim(  # as the store keeps it
        "Pod", {"metadata": metadata, "spec": _spec(image), "status": status}
    )  # as the store keeps it


def chute(opt_in: str | None = None) -> dict[str, Any]:
    annotations = {SIDECAR_UPDATE_ANNOTATION: opt_in} if opt_in is not None else {}
    return {"metadata": {"name": "a", "namespace": "ns", "annotations": annotations}}


@pytest.mark.parametrize(
    ("live", "wanted", "may_start", "expected"),
    [
        (None, False, False, SidecarChoice(NEW, NEW)),  # a new Chute gets the current sidecar
        (NEW, False, False, SidecarChoice(NEW, NEW)),
        (OLD, False, True, SidecarChoice(OLD, NEW)),  # not asked for: kept
        (OLD, True, True, SidecarChoice(NEW, NEW, wanted=True)),
        (OLD, True, False, SidecarChoice(OLD, NEW, wanted=True, queued=True)),  # asked for, no slot
    ],
)
def test_choose_keeps_the_live_sidecar_unless_asked_and_a_slot_is_free(
    live: str | None, wanted: bool, may_start: bool, expected: SidecarChoice
) -> None:
    choice = choose(NEW, live, wanted, may_start)
    assert choice == expected
    assert choice.behind == (expected.image != NEW)


@pytest.mark.parametrize(
    ("annotation", "policy", "wanted"),
    [
        (None, MANUAL, False),
        (None, AUTOMATIC, True),
        ("true", MANUAL, True),
        ("True", MANUAL, True),
        ("false", AUTOMATIC, False),
        ("yes please", MANUAL, False),
    ],
)
def test_the_annotation_wins_over_the_policy(annotation: str | None, policy: str, wanted: bool) -> None:
    assert update_wanted(chute(annotation), policy) is wanted


def test_manual_keeps_every_running_chute_s_sidecar_and_a_new_chute_gets_the_current_one() -> None:
    updates = SidecarUpdates(SidecarPolicy(NEW, MANUAL))
    kept = updates.choose(("ns", "a"), chute(), deployment(OLD), [pod(OLD)])
    assert (kept.image, kept.behind, kept.queued) == (OLD, True, False)
    assert updates.choose(("ns", "b"), chute(), None, []).image == NEW
    assert updates.updating == () == updates.waiting


def test_opted_in_chutes_update_one_at_a_time_the_next_once_the_first_is_rolled_out() -> None:
    woken: list[tuple[str, str]] = []
    updates = SidecarUpdates(SidecarPolicy(NEW, MANUAL, max_concurrent_updates=1), wake=woken.append)
    a, b, c = ("ns", "a"), ("ns", "b"), ("ns", "c")
    assert updates.choose(a, chute("true"), deployment(OLD), [pod(OLD)]).image == NEW
    second = updates.choose(b, chute("true"), deployment(OLD), [pod(OLD)])
    assert (second.image, second.queued) == (OLD, True)
    assert updates.choose(c, chute("true"), deployment(OLD), [pod(OLD)]).queued
    assert updates.updating == (a,)
    assert updates.waiting == (b, c)
    # a again, its template applied (the controller has not caught up): it keeps its slot
    assert updates.choose(a, chute("true"), deployment(NEW, rolled_out=False), [pod(OLD)]).image == NEW
    # a surge pod Ready on the new sidecar, the old one still there: still updating
    updates.choose(a, chute("true"), deployment(NEW), [pod(OLD), pod(NEW, "a-2")])
    assert updates.updating == (a,)
    assert woken == []
    # rolled out (the old pod terminating): the slot goes to the oldest waiter, woken
    updates.choose(a, chute("true"), deployment(NEW), [pod(OLD, terminating=True), pod(NEW, "a-2")])
    assert updates.updating == ()
    assert woken == [b]
    assert updates.choose(b, chute("true"), deployment(OLD), [pod(OLD)]).image == NEW
    assert updates.updating == (b,)
    assert updates.waiting == (c,)


def test_the_pace_allows_as_many_as_set() -> None:
    updates = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC, max_concurrent_updates=2))
    images = [
        updates.choose(("ns", name), chute(), deployment(OLD), [pod(OLD)]).image for name in ("a", "b", "c")
    ]
    assert images == [NEW, NEW, OLD]
    assert updates.choose(("ns", "d"), chute("false"), deployment(OLD), [pod(OLD)]).queued is False


def test_a_waiter_that_withdraws_or_a_deleted_chute_wakes_the_next() -> None:
    woken: list[tuple[str, str]] = []
    updates = SidecarUpdates(SidecarPolicy(NEW, MANUAL), wake=woken.append)
    a, b, c = ("ns", "a"), ("ns", "b"), ("ns", "c")
    for key in (a, b, c):
        updates.choose(key, chute("true"), deployment(OLD), [pod(OLD)])
    updates.forget(a)  # deleted mid-update
    assert woken == [b]
    updates.choose(b, chute(), deployment(OLD), [pod(OLD)])  # its annotation removed before its turn
    assert updates.waiting == (c,)
    assert woken == [b, c]


def test_an_update_under_way_when_the_operator_started_counts() -> None:
    """A template with the new sidecar over pods with the old one: begun by the previous operator."""
    updates = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC))
    under_way = updates.choose(("ns", "a"), chute(), deployment(NEW, rolled_out=False), [pod(OLD)])
    assert under_way.image == NEW
    assert updates.updating == (("ns", "a"),)
    assert updates.choose(("ns", "b"), chute(), deployment(OLD), [pod(OLD)]).queued
    # a new Chute's or a spec change's rollout (every pod on the current sidecar) is not an update
    fresh = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC))
    fresh.choose(("ns", "c"), chute(), deployment(NEW, rolled_out=False), [pod(NEW)])
    assert fresh.updating == ()
