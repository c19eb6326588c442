"""Two replicas do not read every sidecar twice: the leader reads every autoscaled pod each round, a
standby only the Chutes the API server asked it about lately, and a Chute asked about for the first
time there and then, before the answer (issue 30)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from chute_operator.metricsapi.demand import Demand, chute_key, scraped, to_read_now
from chute_operator.metricsapi.samples import Sample, Samples
from chute_operator.metricsapi.scraper import NodeKinds, Scraper
from chute_operator.metricsapi.server import PREFIX, metrics_api_app
from chute_operator.metricsapi.targets import is_simulated_node
from chute_shared.cluster import CHUTE_LABEL
from chute_shared.metrics import UTILIZATION_METRIC
from tests.unit.chute_operator.metricsapi.test_scraper import CountingListener, listener, pod

__all__ = ["listener"]  # the fixture, used here


def _of(chute: str, name: str, port: int = 1) -> dict[str, Any]:
    found = pod(name, "real", port)
    found["metadata"]["labels"] = {CHUTE_LABEL: chute}
    return found


def test_a_standby_reads_the_chutes_it_was_asked_about_within_the_window() -> None:
    now = [100.0]
    demand = Demand(window=120, clock=lambda: now[0])
    pods = [_of("a", "a-1"), _of("a", "a-2"), _of("b", "b-1")]
    assert scraped(pods, leader=True, wanted=demand.wanted()) == pods
    assert scraped(pods, leader=False, wanted=demand.wanted()) == []
    demand.note([_of("a", "a-1"), {"metadata": {"namespace": "ns", "name": "unlabelled"}}])
    assert demand.wanted() == {("ns", "a")}
    assert [p["metadata"]["name"] for p in scraped(pods, False, demand.wanted())] == ["a-1", "a-2"]
    now[0] += 121
    assert demand.wanted() == set()  # asked no more: forgotten
    assert chute_key(pods[2]) == ("ns", "b")


async def test_read_now_reads_the_pods_it_is_given(listener: CountingListener) -> None:
    async def real(name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}}

    samples = Samples(max_age=10)
    scraper = Scraper(list, NodeKinds(real, is_simulated_node), samples)
    try:
        await scraper.read_now([_of("a", "a-1", listener.port)])
        sample = samples.fresh(("ns", "a-1"), time.monotonic())
        assert sample is not None
        assert sample.utilization == 0.25
        await scraper.read_now([_of("a", "a-1", listener.port)], limit=0)
        assert listener.connections == 1
    finally:
        await scraper.close()


async def _serve(refresh: Any, samples: Samples) -> AsyncIterator[TestClient[Any, Any]]:
    pods = [_of("a", "a-1")]
    app = metrics_api_app(lambda namespace, selector: pods, samples, dict, 2, None, None, refresh)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def test_the_answer_waits_for_the_refresh_of_its_pods() -> None:
    samples = Samples(max_age=10)
    asked: list[list[str]] = []

    async def refresh(pods: list[dict[str, Any]]) -> None:
        asked.append([p["metadata"]["name"] for p in pods])
        samples.record(("ns", "a-1"), Sample(0.5, time.monotonic(), time.time()))

    async for client in _serve(refresh, samples):
        path = f"/namespaces/ns/pods/*/{UTILIZATION_METRIC}?labelSelector={CHUTE_LABEL}%3Da"
        response = await client.get(PREFIX + path)
        body = await response.json()
        assert response.status == 200, body
        assert asked == [["a-1"]]
        assert [item["describedObject"]["name"] for item in body["items"]] == ["a-1"]


def test_the_leader_reads_now_only_the_pods_no_round_has_tried() -> None:
    """After a restart (or for a pod that became ready since the last round) the leader has no reading
    and no reason: it reads those pods before answering, instead of a 404 the HPA reports as a failure.
    A pod the last round tried and could not read is not read again for every question."""
    samples = Samples(max_age=10)
    now = time.monotonic()
    fresh, failed, untried = _of("a", "a-1"), _of("a", "a-2"), _of("a", "a-3")
    samples.record(("ns", "a-1"), Sample(0.5, now, time.time()))
    reasons = {("ns", "a-2"): "connection refused"}
    pods = [fresh, failed, untried]
    assert to_read_now(pods, samples, reasons, leader=True, now=now) == [untried]
    assert to_read_now(pods, samples, reasons, leader=False, now=now) == [failed, untried]


async def test_a_chute_metric_asked_before_the_caches_synced_is_unavailable_not_missing() -> None:
    """A restarted replica answered "no pod matches" while its store was still empty: a wrong answer
    (the pods exist). Until the caches are synced it says 503, as the API server would."""
    synced = [False]
    samples = Samples(max_age=10)
    samples.record(("ns", "a-1"), Sample(0.5, time.monotonic(), time.time()))
    pods = [_of("a", "a-1")]
    app = metrics_api_app(
        lambda namespace, selector: pods if synced[0] else [], samples, dict, 2, None, ready=lambda: synced[0]
    )
    path = PREFIX + f"/namespaces/ns/pods/*/{UTILIZATION_METRIC}?labelSelector={CHUTE_LABEL}%3Da"
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get(path)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert "not synced" in (await response.json())["message"]
        synced[0] = True
        response = await client.get(path)
        assert response.status == 200
