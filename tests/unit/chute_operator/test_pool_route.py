"""A Chute with an HTTPRoute to its InferencePool that may be at zero (issue 28, item 3): its route sends
to its Service (the activator) while it is at zero, has no ready replica or is about to sleep, to the
pool otherwise; it sleeps only once its live route no longer sends to the pool."""

from __future__ import annotations

import dataclasses
from typing import Any

from chute_operator.drift import stamped
from chute_operator.expose import INFERENCE_GROUP, sends_to_pool, via_service
from chute_operator.plan import Found, make_plan
from chute_operator.pool_route import route_via_service, with_route_via_service
from chute_operator.validation import parse_chute
from chute_operator.workload import resolve
from chute_operator.zero import Action
from tests.unit.chute_operator.test_plan import (
    ACTIVATOR,
    MANAGER,
    NOW,
    OPTIONS,
    _live,
    _pod,
    _scale_to_zero,
    _snapshot,
)

EXPOSE = {
    "httpRoute": {"parentRefs": [{"name": "gw"}], "hostnames": ["models.example.com"]},
    "inferencePool": {},
}


def _route(manifests: Any) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] == "HTTPRoute")


def test_via_service_sends_every_pool_backend_to_the_services_serving_port() -> None:
    route = {
        "spec": {
            "rules": [{"backendRefs": [{"group": INFERENCE_GROUP, "kind": "InferencePool", "name": "a"}]}]
        }
    }
    assert sends_to_pool(route)
    moved = via_service(route, "a", 80)
    assert moved["spec"]["rules"][0]["backendRefs"] == [{"name": "a", "port": 80}]
    assert not sends_to_pool(moved)
    assert sends_to_pool(route)  # a copy


def test_the_route_goes_via_the_service_only_for_a_pool_chute_that_may_be_at_zero() -> None:
    sleepy = resolve(parse_chute(_scale_to_zero(expose=EXPOSE)), OPTIONS)
    ready = (_pod("a-1"),)
    assert route_via_service(sleepy, {"spec": {"replicas": 1}}, ready, Action.SLEEP)
    assert route_via_service(sleepy, {"spec": {"replicas": 1}}, (), Action.STAY)  # no ready replica
    assert not route_via_service(sleepy, {"spec": {"replicas": 1}}, ready, Action.STAY)
    always_up = resolve(parse_chute(_scale_to_zero(expose=EXPOSE) | {}), OPTIONS)
    fixed = dataclasses.replace(always_up, scale_to_zero=False)
    assert not route_via_service(fixed, {"spec": {"replicas": 1}}, (), Action.SLEEP)
    no_pool = resolve(parse_chute(_scale_to_zero(expose={"httpRoute": EXPOSE["httpRoute"]})), OPTIONS)
    assert not route_via_service(no_pool, {"spec": {"replicas": 1}}, (), Action.SLEEP)


def test_an_idle_chute_moves_its_route_to_the_service_first_and_sleeps_after() -> None:
    chute = _scale_to_zero(expose=EXPOSE)
    pods = (_pod("a-1"),)
    base = _snapshot(chute, pods=pods, activator=ACTIVATOR, idle={"a-1": 61.0})
    assert sends_to_pool(_route(base.desired))
    workload = base.workload
    assert workload is not None
    desired = with_route_via_service(base.desired, workload)
    assert not sends_to_pool(_route(desired))
    assert _route(desired) == stamped(_route(desired))  # stamped again: drift sees the new route

    # 1. the live route still sends to the pool: it is updated, the Chute does not sleep yet
    children = tuple(
        Found(m, _live(_route(base.desired)) if m["kind"] == "HTTPRoute" else f.live)
        for m, f in zip(desired, base.children, strict=True)
    )
    first = make_plan(dataclasses.replace(base, desired=desired, children=children), NOW, MANAGER)
    assert first.zero is None
    assert ("HTTPRoute", "update") in [(s.kind, s.action) for s in first.steps]

    # 2. the live route sends to the Service: it sleeps
    children = tuple(
        Found(m, _live(m) if m["kind"] == "HTTPRoute" else f.live)
        for m, f in zip(desired, base.children, strict=True)
    )
    second = make_plan(dataclasses.replace(base, desired=desired, children=children), NOW, MANAGER)
    assert second.zero is not None
    assert second.zero.action is Action.SLEEP
    assert ("HTTPRoute", "update") not in [(s.kind, s.action) for s in second.steps]


def test_a_chute_without_a_pool_sleeps_at_once() -> None:
    chute = _scale_to_zero(expose={"httpRoute": EXPOSE["httpRoute"]})
    plan = make_plan(
        _snapshot(chute, pods=(_pod("a-1"),), activator=ACTIVATOR, idle={"a-1": 61.0}), NOW, MANAGER
    )
    assert plan.zero is not None
    assert plan.zero.action is Action.SLEEP
