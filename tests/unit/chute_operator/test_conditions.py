"""lastTransitionTime moves only when a condition's status flips; observedGeneration is always set."""

from __future__ import annotations

from datetime import UTC, datetime

from chute_operator.conditions import Observed, merge_conditions

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 12, 5, 0, tzinfo=UTC)


def test_transition_time_kept_while_status_stays() -> None:
    first = merge_conditions([], [Observed("Ready", "False", "ModelLoading", "loading")], 1, T0)
    again = merge_conditions(first, [Observed("Ready", "False", "Unschedulable", "no node")], 2, T1)
    assert again[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert (again[0]["reason"], again[0]["observedGeneration"]) == ("Unschedulable", 2)


def test_transition_time_moves_when_status_flips() -> None:
    first = merge_conditions([], [Observed("Ready", "False", "ModelLoading", "")], 1, T0)
    flipped = merge_conditions(first, [Observed("Ready", "True", "Serving", "1/1")], 1, T1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
