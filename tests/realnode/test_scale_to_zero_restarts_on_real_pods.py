"""Scale to zero that holds every request through an operator restart and an activator rollout (issue
25), on real pods: a short run of the soak (tests/scale_to_zero_soak.py; benchmarks/scale_to_zero_soak.py
runs it longer).

One Chute (minInstances 0, shutdownAfterSeconds 60) goes to zero twice and is woken twice by a bounded
open-loop load to its Service's ClusterIP (bodies of 0 bytes to 8 MiB on the model's digest route,
and streamed chat completions):
1. at zero, the operator is stopped; requests arrive for a few seconds (the activator holds them,
   nothing wakes the Chute); the operator is started again, reads the activator's endpoints, wakes
   the Chute, and every held request is answered;
2. at zero again, the activator is rolled out: a second activator process on a second address of the
   host, the first holding requests; both listed in the activator Service; the first SIGTERMed and
   listed as terminating: it drains while the operator moves the Chute's slice to the second.

Every answer is a 200 (the body byte-exact, the stream whole and token by token) or a 503 with
Retry-After: no refused or reset connection, no cut answer. About 3 minutes, most of it two idle
windows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.scale_to_zero_soak import ALLOWED, BODY_SIZES, Plan, Soak

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(600)]

PLAN = Plan(wakes=2, restart_at_wake=1, rollout_at_wake=2, rate=5.0, burst_seconds=5.0, load_seconds=6.0)


def test_no_request_is_refused_through_an_operator_restart_and_an_activator_rollout_at_zero(
    control_plane: ControlPlane,
    real_node: RealNode,
    chute_crd: Path,
    namespace: str,
    session_operator_paused: None,
    tmp_path: Path,
) -> None:
    results = Soak(control_plane, tmp_path, real_node.images[0].ref, namespace, PLAN).run()
    summary = {k: results[k] for k in ("requests", "outcomes", "refused_503_reasons", "bodies", "streams")}
    print(f"soak: {summary}; cycles {results['cycles']}; peak RSS {results['activator_peak_rss_mib']}")

    # Every request answered 200 (byte-exact, whole) or 503 with Retry-After: none refused or cut.
    assert results["failures"] == [], results["failures"]
    assert set(results["outcomes"]) <= set(ALLOWED), results["outcomes"]
    assert results["outcomes"].get("200", 0) > 0
    bodies = results["bodies"]
    assert all(bodies["by_size"][str(size)] > 0 for size in BODY_SIZES), bodies  # 0 B to 8 MiB, each
    assert 0 < bodies["chunked"] < bodies["checked_byte_exact"], bodies
    assert results["streams"]["whole_token_by_token"] > 0, results["streams"]

    # The Chute went to zero and woke twice.
    assert results["went_to_zero"] >= 2, results
    assert results["woke"] >= 2, results

    # The operator's restart came while requests were held and arriving.
    restart = results["cycles"][0]["operator_restart"]
    assert restart["sent_while_down"] >= 1, restart
    assert restart["in_flight_at_start"] >= 1, restart

    # The activator's rollout came while the first held requests: it drained them and exited cleanly,
    # and the operator took it out of the Chute's slice.
    rollout = results["cycles"][1]["activator_rollout"]
    assert rollout["first_held_at_sigterm"] >= 1, rollout
    assert rollout["in_flight_at_sigterm"] >= 1, rollout
    assert rollout["first_exit_code"] == 0, rollout
    assert rollout["sigterm_to_operator_slice_without_first_s"] is not None, rollout
