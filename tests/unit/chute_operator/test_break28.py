"""Breaking pass of issue 28 (spec.expose, the route at zero, the doors): each test shows a problem
found by attacking what was built; a test still marked xfail shows one not fixed yet."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chute_operator.expose import sends_to_pool
from chute_operator.observe import Observer, no_readings
from chute_operator.plan import make_plan
from chute_operator.render import DesiredManifests, render_workload
from chute_operator.settings import Settings, variables_of
from chute_operator.store import Store
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.workload import resolve
from tests.invalid_chutes import GW, chute_with
from tests.unit.chute_operator.test_plan import MANAGER, NOW, OPTIONS, _chute, _snapshot

ROUTE = {"parentRefs": [{"name": "gw"}], "hostnames": ["models.example.com"]}


class _NoChildren:
    """The API server of a namespace where none of the Chute's children exists yet."""

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None


def _observe(chute: dict[str, Any], unserved: set[str]) -> Any:
    async def served(kind: str) -> bool:
        return kind not in unserved

    observer = Observer(
        _NoChildren(),  # type: ignore[arg-type]
        Store(),
        OPTIONS,
        DesiredManifests(),
        served,
        lambda: None,
        no_readings,
    )
    return asyncio.run(observer.observe(chute))


def _route(manifests: Any) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] == "HTTPRoute")


def test_a_route_never_sends_to_a_pool_whose_api_is_not_served() -> None:
    chute = _chute(expose={"httpRoute": ROUTE, "inferencePool": {}})
    snapshot = _observe(chute, unserved={"InferencePool"})
    kinds = [found.manifest["kind"] for found in snapshot.children]
    assert "InferencePool" not in kinds
    assert "HTTPRoute" in kinds
    route = next(f.manifest for f in snapshot.children if f.manifest["kind"] == "HTTPRoute")
    assert not sends_to_pool(route), route["spec"]["rules"][0]["backendRefs"]


def test_a_route_is_not_written_to_a_pool_someone_else_owns() -> None:
    snapshot = _snapshot(
        _chute(expose={"httpRoute": ROUTE, "inferencePool": {}}), live={}, in_the_way=("InferencePool",)
    )
    steps = {step.kind: step.action for step in make_plan(snapshot, NOW, MANAGER).steps}
    assert steps["InferencePool"] == "in the way"
    assert steps["HTTPRoute"] == "held", steps


@pytest.mark.parametrize("kind", ["HTTPRoute", "Ingress"])
def test_a_route_or_ingress_is_not_written_to_a_service_someone_else_owns(kind: str) -> None:
    expose = {"httpRoute": ROUTE} if kind == "HTTPRoute" else {"ingress": {"host": "a.example.com"}}
    snapshot = _snapshot(_chute(expose=expose), live={}, in_the_way=("Service",))
    steps = {step.kind: step.action for step in make_plan(snapshot, NOW, MANAGER).steps}
    assert steps["Service"] == "in the way"
    assert steps[kind] == "held", steps


@pytest.mark.parametrize("port", [9090, 9091])
def test_the_service_port_cannot_be_the_metrics_or_admin_port(port: int) -> None:
    with pytest.raises(InvalidChute, match=r"spec\.service\.port"):
        parse_chute(chute_with(service={"port": port}))


@pytest.mark.parametrize(
    "key",
    [
        "nginx.ingress.kubernetes.io/configuration-snippet",
        "nginx.ingress.kubernetes.io/server-snippet",
        "nginx.ingress.kubernetes.io/auth-snippet",
        "nginx.org/location-snippets",
        "haproxy.org/backend-config-snippet",
    ],
)
def test_ingress_snippet_annotations_are_refused(key: str) -> None:
    with pytest.raises(InvalidChute, match=r"spec\.expose\.ingress\.annotations"):
        parse_chute(chute_with(expose={"ingress": {"annotations": {key: "proxy_pass http://x;"}}}))


@pytest.mark.parametrize("key", ["bad key!", "a/b/c", "-x", "x" * 64, "/x"])
def test_ingress_annotation_keys_are_qualified_names(key: str) -> None:
    with pytest.raises(InvalidChute, match=r"spec\.expose\.ingress\.annotations"):
        parse_chute(chute_with(expose={"ingress": {"annotations": {key: "v"}}}))


def test_an_ingress_host_is_not_an_ip_address() -> None:
    with pytest.raises(InvalidChute, match=r"spec\.expose\.ingress\.host"):
        parse_chute(chute_with(expose={"ingress": {"host": "10.0.0.1"}}))


def test_parent_refs_to_one_gateway_need_distinct_sections() -> None:
    with pytest.raises(InvalidChute, match=r"spec\.expose\.httpRoute\.parentRefs"):
        parse_chute(chute_with(expose={"httpRoute": {"parentRefs": [{"name": "gw"}, {"name": "gw"}]}}))


@pytest.mark.parametrize("path", ["/a//b", "/a/./b", "/a/..", "/a/%zz", "/a/%2Fb"])
def test_match_cords_refuses_cord_paths_the_gateway_api_refuses(path: str) -> None:
    spec = {"cords": [{"path": path, "method": "POST"}], "expose": {"httpRoute": {**GW, "matchCords": True}}}
    with pytest.raises(InvalidChute, match=r"matchCords|cords"):
        parse_chute(chute_with(**spec))


def test_the_route_hold_follows_the_activators_max_wait() -> None:
    hold = [
        name
        for name, field in variables_of().items()
        if field.startswith("scale_to_zero.") and ("wait" in field or "hold" in field)
    ]
    assert hold, "no setting carries the activator's --max-wait-seconds to the operator"
    options = Settings.from_env({hold[0]: "900"}).render_options(OPTIONS.catalog)
    assert options.activator_hold_seconds == 900


def test_what_held_the_route_renders_only_shapes_the_crds_take() -> None:
    """Held: the longest request and hold still fit the Gateway API's 5-digit Duration."""
    chute = _chute(expose={"httpRoute": ROUTE}, minInstances=0, maxInstances=2, requestTimeoutSeconds=86400)
    route = _route(render_workload(resolve(parse_chute(chute), OPTIONS)))
    for value in route["spec"]["rules"][0]["timeouts"].values():
        assert len(value.rstrip("s")) <= 5
