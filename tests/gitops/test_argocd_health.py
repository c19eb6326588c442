"""The chart's Argo CD health check, run with Lua 5.1 (as Argo CD's gopher-lua) against real Chutes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.gitops.argocd import health
from tests.gitops.doc_table import state_table
from tests.gitops.fixtures import fixture_names, load


def test_every_row_of_the_state_table_has_a_fixture_and_every_fixture_a_row() -> None:
    assert set(state_table()) == set(fixture_names())


@pytest.mark.parametrize("fixture", fixture_names())
def test_health_of_each_fixture_is_what_the_docs_say(fixture: str) -> None:
    assert health(load(fixture)).status == state_table()[fixture].argocd


@pytest.mark.parametrize("fixture", fixture_names())
def test_the_message_is_the_deciding_conditions_reason_and_message(fixture: str) -> None:
    obj = load(fixture)
    shown = health(obj)
    if shown.message.startswith("Waiting for chute-operator"):
        assert shown.status == "Progressing"
        return
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    failing = [
        c for c in (conditions.get("Stalled"), conditions.get("Degraded")) if c and c["status"] == "True"
    ]
    if shown.status == "Degraded":
        deciding = failing[0]
    elif shown.status == "Suspended":
        deciding = conditions["Available"]
    else:
        deciding = conditions["Ready"]
    expected = f"{deciding['reason']}: {deciding['message']}"
    if shown.status == "Healthy" and failing:
        expected += f"; Degraded: {failing[0]['reason']}: {failing[0]['message']}"
    assert shown.message == expected


def _serving() -> dict[str, Any]:
    return copy.deepcopy(load("serving"))


def test_a_ready_condition_older_than_the_generation_is_progressing() -> None:
    obj = _serving()
    obj["metadata"]["generation"] = 3
    obj["status"]["observedGeneration"] = 3
    for c in obj["status"]["conditions"]:
        c["observedGeneration"] = 2
    shown = health(obj)
    assert shown.status == "Progressing"
    assert shown.message == (
        "Waiting for chute-operator to observe generation 3 (the status describes generation 2)"
    )


def test_stalled_wins_over_a_ready_condition() -> None:
    obj = _serving()
    stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
    stalled.update(status="True", reason="ImagePullBackOff", message="1 of 2 pods: x")
    assert health(obj).status == "Degraded"
    assert health(obj).message == "ImagePullBackOff: 1 of 2 pods: x"


def test_a_condition_without_a_message_shows_its_reason() -> None:
    obj = _serving()
    for c in obj["status"]["conditions"]:
        c.pop("message", None)
    assert health(obj).message == "Serving"


def test_no_status_is_progressing() -> None:
    obj = _serving()
    del obj["status"]
    assert health(obj).status == "Progressing"


def test_ready_despite_a_degraded_reason_is_healthy_and_says_so() -> None:
    obj = _serving()
    degraded = next(c for c in obj["status"]["conditions"] if c["type"] == "Degraded")
    degraded.update(status="True", reason="Unschedulable", message="1 of 3 pods: p: no node")
    shown = health(obj)
    assert shown.status == "Healthy"
    assert shown.message.endswith("; Degraded: Unschedulable: 1 of 3 pods: p: no node")
