"""Pure parts of the activator: which Chute has a port, ready endpoints, why a Chute cannot wake."""

from __future__ import annotations

import pytest

from chute_activator.derive import activator_port, cannot_wake, chute_state, ready_endpoints, serving_address
from chute_activator.holding import retry_after_seconds
from chute_activator.state import ChuteState, port_owner


@pytest.mark.parametrize(
    ("status", "port"),
    [
        ({"activatorPort": 20017}, 20017),
        ({"activatorPort": 0}, None),
        ({"activatorPort": 70000}, None),
        ({"activatorPort": "20017"}, None),
        ({"activatorPort": True}, None),
        ({}, None),
    ],
)
def test_a_chutes_port_is_the_one_its_status_names(status: dict[str, object], port: int | None) -> None:
    assert activator_port({"status": status}) == port
    state = chute_state({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}, "status": status}, [])
    assert state is not None
    assert (state.port, state.created) == (port, "2026-01-01T00:00:00Z")


def test_a_port_two_chutes_claim_is_neither_ones() -> None:
    """A status edited by hand to another Chute's port: never guess whose; the operator rewrites it."""
    assert port_owner({("b", "x"): "2026-01-01T00:00:00Z"}) == ("b", "x")
    assert port_owner({("a", "y"): "2026-02-01T00:00:00Z", ("b", "x"): "2026-01-01T00:00:00Z"}) is None
    assert port_owner({}) is None


def _slice(port_name: str, *endpoints: dict[str, object]) -> dict[str, object]:
    return {"ports": [{"name": port_name, "port": 8080}], "endpoints": list(endpoints)}


def test_only_ready_not_terminating_endpoints_of_the_serving_port_count() -> None:
    slices = [
        _slice(
            "http",
            {"addresses": ["10.244.1.5"], "conditions": {"ready": True}},
            {"addresses": ["10.244.1.6"], "conditions": {"ready": False}},
            {"addresses": ["10.244.1.7"], "conditions": {"ready": True, "terminating": True}},
            {"addresses": ["fd00::7"], "conditions": {}},
        ),
        _slice("metrics", {"addresses": ["10.244.1.9"], "conditions": {"ready": True}}),
    ]
    assert ready_endpoints(slices) == ("10.244.1.5:8080", "[fd00::7]:8080")


def test_a_degraded_chute_without_replicas_cannot_wake_and_a_deleted_one_is_gone() -> None:
    chute = {
        "metadata": {"name": "llm", "namespace": "team"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "ImagePullBackOff"},
                {"type": "Degraded", "status": "True", "reason": "ImagePullBackOff", "message": "bad tag"},
            ]
        },
    }
    assert cannot_wake(chute) == "ImagePullBackOff: bad tag"
    assert chute_state(chute, []) == ChuteState(cannot_wake="ImagePullBackOff: bad tag")
    ready = _slice("http", {"addresses": ["10.244.1.5"], "conditions": {"ready": True}})
    assert chute_state(chute, [ready]) == ChuteState(endpoints=("10.244.1.5:8080",), source="EndpointSlice")
    assert chute_state(None, []) is None
    assert chute_state({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}, []) is None


@pytest.mark.parametrize(("load", "expected"), [(None, 10), (0.2, 1), (41.2, 42), (5000.0, 600)])
def test_retry_after_follows_the_load_time(load: float | None, expected: int) -> None:
    assert retry_after_seconds(load, 10) == expected


def test_the_activator_is_a_subcommand_of_the_one_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from chute_operator.cli import main

    with pytest.raises(SystemExit) as exit_code:
        main(["activator", "--help"])
    assert exit_code.value.code == 0
    assert "--queue-limit" in capsys.readouterr().out


@pytest.mark.parametrize("reason", ["ProbeFailing", "OOMKilled", "ProgressDeadlineExceeded"])
def test_a_transient_degraded_reason_while_waking_keeps_requests_held(reason: str) -> None:
    """A readiness probe failing while the woken model finishes loading is not a reason to give up."""
    chute = {"status": {"conditions": [{"type": "Degraded", "status": "True", "reason": reason}]}}
    assert cannot_wake(chute) is None


def _pod(**changes: object) -> dict[str, object]:
    pod: dict[str, object] = {
        "metadata": {"name": "llm-1"},
        "spec": {
            "initContainers": [{"name": "chute-sidecar", "ports": [{"name": "http", "containerPort": 8080}]}]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "initContainerStatuses": [{"name": "chute-sidecar", "state": {"running": {}}}],
        },
    }
    for section, value in changes.items():
        pod[section] = {**pod[section], **value}  # type: ignore[dict-item]
    return pod


def test_a_pod_is_asked_for_readiness_only_once_its_sidecar_runs_and_while_it_is_not_terminating() -> None:
    assert serving_address(_pod()) == "10.244.1.5:8080"
    assert serving_address(_pod(status={"podIP": "fd00::5"})) == "[fd00::5]:8080"
    assert serving_address(_pod(status={"podIP": None})) is None  # no sandbox yet
    waiting = [{"name": "chute-sidecar", "state": {"waiting": {}}}]
    assert serving_address(_pod(status={"initContainerStatuses": waiting})) is None
    assert serving_address(_pod(metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})) is None
    assert serving_address(_pod(status={"phase": "Failed"})) is None


def test_slices_decide_over_a_sidecar_that_said_ready() -> None:
    chute = {"metadata": {"name": "llm"}}
    early = chute_state(chute, [], sidecar_ready=["10.244.1.5:8080"])
    assert early == ChuteState(endpoints=("10.244.1.5:8080",), source="sidecar")
    ready = _slice("http", {"addresses": ["10.244.1.6"], "conditions": {"ready": True}})
    assert chute_state(chute, [ready], sidecar_ready=["10.244.1.5:8080"]) == ChuteState(
        endpoints=("10.244.1.6:8080",), source="EndpointSlice"
    )
