"""The sidecar update policy's pace (sidecars.py) against pods and annotations a real cluster has
(found by the breaking pass of issue 26)."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.sidecars import (
    AUTOMATIC,
    MANUAL,
    SidecarPolicy,
    SidecarUpdates,
    update_wanted,
)
from tests.unit.chute_operator.test_sidecars import NEW, OLD, pod
from tests.unit.chute_operator.test_sidecars import chute as _chute
from tests.unit.chute_operator.test_sidecars import deployment as _deployment


def _pod(image: str, name: str, phase: str = "Running", reason: str = "") -> dict[str, Any]:
    return pod(image, name, phase=phase, reason=reason)


def test_an_evicted_old_pod_does_not_hold_the_update_slot_forever() -> None:
    woken: list[tuple[str, str]] = []
    updates = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC, max_concurrent_updates=1), wake=woken.append)
    a, b = ("ns", "a"), ("ns", "b")
    assert updates.choose(a, _chute(), _deployment(OLD), [_pod(OLD, "a-1")]).image == NEW
    assert updates.choose(b, _chute(), _deployment(OLD), [_pod(OLD, "b-1")]).queued
    # a's roll is done: its one replica Ready on the new sidecar; the old pod was evicted (node
    # pressure) before it was replaced and stays as a Failed pod object
    evicted = _pod(OLD, "a-1", phase="Failed", reason="Evicted")
    updates.choose(a, _chute(), _deployment(NEW), [evicted, _pod(NEW, "a-2")])
    assert updates.updating == ()
    assert woken == [b]


def test_a_restarted_operator_does_not_count_an_evicted_pod_as_an_update_under_way() -> None:
    updates = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC, max_concurrent_updates=1))
    a, b = ("ns", "a"), ("ns", "b")
    evicted = _pod(OLD, "a-1", phase="Failed", reason="Evicted")
    updates.choose(a, _chute(), _deployment(NEW), [evicted, _pod(NEW, "a-2")])
    assert updates.updating == ()
    assert updates.choose(b, _chute(), _deployment(OLD), [_pod(OLD, "b-1")]).image == NEW


def test_opting_out_mid_roll_gives_the_slot_back() -> None:
    woken: list[tuple[str, str]] = []
    updates = SidecarUpdates(SidecarPolicy(NEW, MANUAL, max_concurrent_updates=1), wake=woken.append)
    a, b = ("ns", "a"), ("ns", "b")
    assert updates.choose(a, _chute("true"), _deployment(OLD), [_pod(OLD, "a-1")]).image == NEW
    assert updates.choose(b, _chute("true"), _deployment(OLD), [_pod(OLD, "b-1")]).queued
    stuck = [_pod(OLD, "a-1"), _pod(NEW, "a-2", phase="Pending")]
    updates.choose(a, _chute("true"), _deployment(NEW, rolled_out=False), stuck)
    # the platform team gives up on a: it should stop counting against the limit
    choice = updates.choose(a, _chute("false"), _deployment(NEW, rolled_out=False), stuck)
    assert (choice.image, updates.updating) == (OLD, ())
    assert woken == [b]


@pytest.mark.parametrize("value", ["yes", "1", "on", "ture"])
def test_an_unreadable_annotation_does_not_silently_opt_out_under_automatic(value: str) -> None:
    assert update_wanted(_chute(value), AUTOMATIC) is True


def _stalled(deployment: dict[str, Any]) -> dict[str, Any]:
    deployment["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ]
    return deployment


def test_a_roll_past_its_progress_deadline_gives_its_slot_back_and_says_so() -> None:
    woken: list[tuple[str, str]] = []
    updates = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC, max_concurrent_updates=1), wake=woken.append)
    a, b = ("ns", "a"), ("ns", "b")
    assert updates.choose(a, _chute(), _deployment(OLD), [_pod(OLD, "a-1")]).image == NEW
    assert updates.choose(b, _chute(), _deployment(OLD), [_pod(OLD, "b-1")]).queued
    stuck = [_pod(OLD, "a-1"), _pod(NEW, "a-2", phase="Pending")]
    choice = updates.choose(a, _chute(), _stalled(_deployment(NEW, rolled_out=False)), stuck)
    assert (choice.image, choice.rolling, choice.stalled) == (NEW, True, True)
    assert updates.updating == ()
    assert woken == [b]


def test_a_restarted_operator_does_not_count_a_stalled_roll_as_under_way() -> None:
    updates = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC, max_concurrent_updates=1))
    stuck = [_pod(OLD, "a-1"), _pod(NEW, "a-2", phase="Pending")]
    updates.choose(("ns", "a"), _chute(), _stalled(_deployment(NEW, rolled_out=False)), stuck)
    assert updates.updating == ()


def test_while_pods_run_the_older_sidecar_the_chute_is_rolling_not_current() -> None:
    updates = SidecarUpdates(SidecarPolicy(NEW, AUTOMATIC, max_concurrent_updates=1))
    pods = [_pod(OLD, "a-1"), _pod(NEW, "a-2")]
    choice = updates.choose(("ns", "a"), _chute(), _deployment(NEW, rolled_out=False), pods)
    assert (choice.image, choice.behind, choice.rolling) == (NEW, False, True)
    done = updates.choose(("ns", "a"), _chute(), _deployment(NEW), [_pod(NEW, "a-2")])
    assert (done.rolling, updates.updating) == (False, ())


@pytest.mark.parametrize("value", ["no", "0", "off", "FALSE "])
def test_the_common_spellings_of_no_opt_out(value: str) -> None:
    assert update_wanted(_chute(value), AUTOMATIC) is False
