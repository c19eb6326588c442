"""Breaking pass 29: the weights cache attacked by a hostile pod, a careless spec and a failing cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chute_operator.api import reasons as r
from chute_operator.render import render_weights, render_workload
from chute_operator.store import slim
from chute_operator.weights import job_pods, progress_of, weights_state
from chute_shared import weights as shared
from tests.unit.chute_operator.test_weights import BOUND, _chute, _workload

JOB_UID = "job-uid-1"


def _job(condition: str | None = None, **status: Any) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "message": "m"}] if condition else []
    return {"metadata": {"name": "j", "uid": JOB_UID}, "status": {"conditions": conditions, **status}}


def _pod(phase: str, message: str | None = None, owner: str | None = JOB_UID) -> dict[str, Any]:
    container: dict[str, Any] = {"name": shared.DOWNLOAD_CONTAINER}
    if message is not None:
        container["state"] = {"terminated": {"exitCode": 3, "message": message}}
    meta: dict[str, Any] = {"name": "p"}
    if owner:
        meta["ownerReferences"] = [{"kind": "Job", "name": "j", "uid": owner, "controller": True}]
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [container]}}


@pytest.mark.parametrize(
    "line",
    [
        '{"bytesDone": 1e999, "bytesTotal": 1}',  # int(inf): OverflowError
        "[" * 5000,  # RecursionError from the JSON decoder
    ],
)
def test_a_hostile_progress_line_is_no_progress_not_a_crash(line: str) -> None:
    """The operator reads the last log line of a Running pod labelled with the cache's key: any pod
    of the namespace may carry that label."""
    assert progress_of(line) is None


def test_a_hostile_termination_message_is_not_a_crash() -> None:
    cache = _workload(_chute()).weights
    state = weights_state(cache, BOUND, _job("Failed"), [_pod("Failed", "[" * 4000)])
    assert state.reason == r.DOWNLOAD_FAILED


def test_a_pod_the_job_does_not_own_cannot_write_the_chutes_status() -> None:
    """A user's pod with the cache's (predictable) label and a container named "download" chooses
    the reason and the message of the Chute's Weights and Degraded conditions."""
    cache = _workload(_chute()).weights
    spoof = _pod("Failed", json.dumps({"reason": "DiskFull", "message": "visit evil.example"}), owner="x")
    state = weights_state(cache, BOUND, _job("Failed"), [spoof])
    assert "evil.example" not in state.message
    assert state.reason == r.DOWNLOAD_FAILED


def test_a_pod_the_job_does_not_own_cannot_hold_the_download_as_pending() -> None:
    cache = _workload(_chute()).weights
    spoof = _pod("Pending", owner="x")
    spoof["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "message": "spoofed"}]
    state = weights_state(cache, BOUND, _job(), [spoof, _pod("Running")], progress=(1, 2))
    assert state.reason == r.WEIGHTS_DOWNLOADING


def test_serving_pods_cannot_wear_the_download_pods_label() -> None:
    """spec.pod.labels is passed through: a serving pod labelled chutes.ai/weights=<key> is selected
    by the download pod's NetworkPolicy (egress: [{}]) and reaches the hub (and everything else)."""
    document = _chute()
    key = _workload(document).weights.key
    document["spec"]["pod"] = {"labels": {shared.WEIGHTS_LABEL: key}}
    deployment = next(m for m in render_workload(_workload(document)) if m["kind"] == "Deployment")
    assert shared.WEIGHTS_LABEL not in deployment["spec"]["template"]["metadata"]["labels"]


def test_a_cache_claim_recreated_after_the_download_is_not_ready() -> None:
    """Breaking pass 29: a cache PVC deleted by hand is made again, empty, while the old Job stays
    Complete: the Chute said WeightsReady and its serving pods mounted an empty cache."""
    cache = _workload(_chute()).weights
    job = _job("Complete", completionTime="2025-01-01T00:10:00Z", startTime="2025-01-01T00:00:00Z")
    pvc = {"metadata": {"creationTimestamp": "2025-01-02T00:00:00Z"}, "status": {"phase": "Bound"}}
    assert not weights_state(cache, pvc, job).ready


def test_the_download_job_has_a_deadline() -> None:
    """Breaking pass 29: without activeDeadlineSeconds, a hub that trickles bytes kept the Chute
    Downloading (and a pod running with open egress) for ever."""
    job = render_weights(_workload(_chute()).weights)[2]
    assert job["spec"].get("activeDeadlineSeconds")


def test_the_job_owned_pods_the_store_keeps_still_speak_for_the_download() -> None:
    """The store slims every pod as it arrives: the owner reference that ties a download pod to its
    Job must survive it, or no pod speaks for the download (CI run 16 found it on real pods)."""
    cache = _workload(_chute()).weights
    stored = slim("Pod", _pod("Failed", json.dumps({"reason": "DiskFull", "message": "the disk is full"})))
    assert job_pods(_job("Failed"), [stored]) == [stored]
    assert weights_state(cache, BOUND, _job("Failed"), [stored]).reason == r.DISK_FULL
