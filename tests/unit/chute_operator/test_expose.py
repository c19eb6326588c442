"""spec.expose: what the HTTPRoute, Ingress and InferencePool are rendered as (pure), the Exposed
condition and status.url, and which kinds a plan leaves out or prunes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from chute_operator.api import reasons as r
from chute_operator.gpus import builtin_catalog
from chute_operator.plan import PRUNABLE, Found, Snapshot, make_plan
from chute_operator.render import render_workload
from chute_operator.rollout import observe as observe_rollout
from chute_operator.status import Observation, compute_status
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.workload import RenderOptions, Workload, resolve
from chute_operator.zero import ABSENT
from tests.invalid_chutes import GW, chute_with

OPTIONS = RenderOptions(catalog=builtin_catalog())
ROUTE = {"parentRefs": [{"name": "gw", "namespace": "gateways"}], "hostnames": ["models.example.com"]}


def _workload(**spec: Any) -> Workload:
    document = chute_with(**spec)
    document["metadata"].update(namespace="ns", uid="u-1")
    return resolve(parse_chute(document), OPTIONS)


def _kinds(workload: Workload) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in render_workload(workload)}


def test_nothing_is_exposed_unless_asked() -> None:
    kinds = _kinds(_workload())
    assert not {"HTTPRoute", "Ingress", "InferencePool"} & set(kinds)


def test_the_route_reaches_the_services_serving_port_with_the_chutes_timeouts() -> None:
    kinds = _kinds(_workload(expose={"httpRoute": ROUTE}, service={"port": 8000}, requestTimeoutSeconds=3600))
    route = kinds["HTTPRoute"]
    assert route["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["models.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": "invalid", "port": 8000}]
    assert rule["timeouts"] == {"request": "3605s", "backendRequest": "3605s"}
    assert "filters" not in rule


def test_a_chute_that_may_sleep_gives_its_route_the_activators_hold() -> None:
    route = _kinds(_workload(expose={"httpRoute": ROUTE}, minInstances=0, maxInstances=2))["HTTPRoute"]
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "905s", "backendRequest": "605s"}


def test_a_prefix_is_matched_and_rewritten() -> None:
    expose = {"httpRoute": {**ROUTE, "path": "/qwen", "rewritePrefix": "/"}}
    (rule,) = _kinds(_workload(expose=expose))["HTTPRoute"]["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/qwen"}}]
    assert rule["filters"] == [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
        }
    ]


def test_one_match_per_cord() -> None:
    cords = [{"path": "/v1/chat/completions", "method": "POST"}, {"path": "/v1/models/*", "method": "GET"}]
    expose = {"httpRoute": {**GW, "matchCords": True}}
    (rule,) = _kinds(_workload(expose=expose, cords=cords))["HTTPRoute"]["spec"]["rules"]
    assert rule["matches"] == [
        {"path": {"type": "Exact", "value": "/v1/chat/completions"}, "method": "POST"},
        {"path": {"type": "PathPrefix", "value": "/v1/models"}, "method": "GET"},
    ]


def test_with_a_pool_the_route_sends_to_the_pool() -> None:
    kinds = _kinds(_workload(expose={"httpRoute": ROUTE, "inferencePool": {}}))
    backend = kinds["HTTPRoute"]["spec"]["rules"][0]["backendRefs"]
    assert backend == [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "invalid"}]
    names = [m["kind"] for m in render_workload(_workload(expose={"httpRoute": ROUTE, "inferencePool": {}}))]
    assert names.index("InferencePool") < names.index("HTTPRoute")


def test_the_pool_selects_by_the_chute_label_only_on_the_serving_port() -> None:
    picker = {"name": "epp", "port": 9002, "failureMode": "FailOpen"}
    pool = _kinds(_workload(expose={"inferencePool": {"endpointPicker": picker}}, pod={"labels": {"v": "2"}}))
    spec = pool["InferencePool"]["spec"]
    assert spec["selector"] == {"matchLabels": {"chutes.ai/chute": "invalid"}}
    assert spec["targetPorts"] == [{"number": 8080}]
    assert spec["endpointPickerRef"] == {"name": "epp", "port": {"number": 9002}, "failureMode": "FailOpen"}
    bare = _kinds(_workload(expose={"inferencePool": {}}))["InferencePool"]["spec"]
    assert "endpointPickerRef" not in bare


def test_the_ingress_reaches_the_serving_port_by_name() -> None:
    expose = {"ingress": {"className": "nginx", "host": "a.example.com", "tlsSecretName": "a-tls",
                          "annotations": {"k": "v"}}}  # fmt: skip
    ingress = _kinds(_workload(expose=expose))["Ingress"]
    assert ingress["metadata"]["annotations"] == {"k": "v"}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "a-tls", "hosts": ["a.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "a.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "invalid", "port": {"name": "http"}}},
        }
    ]
    bare = _kinds(_workload(expose={"ingress": {}}))["Ingress"]
    assert "ingressClassName" not in bare["spec"]
    assert "tls" not in bare["spec"]
    assert "host" not in bare["spec"]["rules"][0]


def test_no_exposed_object_reaches_the_metrics_or_admin_port() -> None:
    expose = {"httpRoute": ROUTE, "ingress": {"host": "a.example.com"}, "inferencePool": {}}
    for kind, manifest in _kinds(_workload(expose=expose)).items():
        if kind in ("HTTPRoute", "Ingress", "InferencePool"):
            assert not re.search(r"\b(9090|9091|metrics|admin)\b", str(manifest["spec"])), kind


@pytest.mark.parametrize(
    ("expose", "urls"),
    [
        ({"httpRoute": {**ROUTE, "path": "/qwen/"}}, [("HTTPRoute", "https://models.example.com/qwen")]),
        ({"httpRoute": {**ROUTE, "scheme": "http"}}, [("HTTPRoute", "http://models.example.com")]),
        ({"httpRoute": {**GW, "hostnames": ["*.example.com"]}}, []),
        ({"ingress": {"host": "a.example.com", "path": "/a"}}, [("Ingress", "http://a.example.com/a")]),
        (
            {"ingress": {"host": "a.example.com", "tlsSecretName": "t"}},
            [("Ingress", "https://a.example.com")],
        ),
        ({"ingress": {}}, []),
    ],
)
def test_external_urls(expose: dict[str, Any], urls: list[tuple[str, str]]) -> None:
    assert list(_workload(expose=expose).external_urls) == urls


def _status(workload: Workload, **observed: Any) -> dict[str, Any]:
    obs = Observation(generation=1, selector="", workload=workload, **observed)
    return compute_status(obs, datetime(2026, 1, 1, tzinfo=UTC))


def _exposed(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == r.EXPOSED), None)


def test_exposed_condition_and_url() -> None:
    both = _workload(expose={"httpRoute": ROUTE, "ingress": {"host": "a.example.com"}, "inferencePool": {}})
    assert _exposed(_status(_workload())) is None
    applied = _status(both)
    assert _exposed(applied)["reason"] == r.EXPOSE_APPLIED  # type: ignore[index]
    assert applied["url"] == "https://models.example.com"
    missing = _status(both, unexposed=("InferencePool", "HTTPRoute"))
    condition = _exposed(missing)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", r.INFERENCE_POOL_API_UNAVAILABLE)
    assert "InferencePool, HTTPRoute" in condition["message"]
    assert missing["url"] == "http://a.example.com"
    only_route = _status(_workload(expose={"httpRoute": ROUTE}), unexposed=("HTTPRoute",))
    assert _exposed(only_route)["reason"] == r.GATEWAY_API_UNAVAILABLE  # type: ignore[index]
    assert only_route["url"] == "http://invalid.ns.svc.cluster.local"
    conflict = _status(both, exposed_problems=(("HTTPRoute", r.CHILD_CONFLICT, "HTTPRoute invalid exists"),))
    assert _exposed(conflict)["reason"] == r.CHILD_CONFLICT  # type: ignore[index]
    assert conflict["url"] == "http://a.example.com"  # a route in the way is not the Chute's address


def test_every_reason_of_a_missing_api_is_documented() -> None:
    for reason in r.API_UNAVAILABLE.values():
        assert reason in r.CATALOG


def _snapshot(
    workload: Workload, served: set[str], prunable: dict[str, tuple[dict[str, Any], ...]]
) -> Snapshot:
    desired = tuple(render_workload(workload))
    chute = {"metadata": {"name": workload.name, "namespace": "ns", "uid": "u-1"}, "spec": {}}
    return Snapshot(
        key=("ns", workload.name),
        chute=chute,
        workload=workload,
        invalid=None,
        rollout=observe_rollout(None, []),
        desired=desired,
        children=tuple(Found(m) for m in desired if m["kind"] in served),
        deployment=None,
        pods=(),
        prunable=prunable,
        activator_slice=None,
        activator=ABSENT,
    )


def test_a_plan_leaves_out_the_kinds_not_served_and_prunes_what_is_no_longer_asked() -> None:
    workload = _workload(
        expose={"httpRoute": ROUTE, "inferencePool": {}}, monitoring={"serviceMonitor": False}
    )
    base = {"NetworkPolicy", "Service", "Deployment"}
    plan = make_plan(_snapshot(workload, base | {"Ingress"}, {}), datetime.now(UTC), "chute-operator")
    assert plan.unserved == ("InferencePool", "HTTPRoute")
    owner = [{"uid": "u-1", "controller": True}]
    stale = {"metadata": {"name": "invalid", "ownerReferences": owner}}
    foreign = {"metadata": {"name": "invalid", "ownerReferences": [{"uid": "other", "controller": True}]}}
    bare = _workload(monitoring={"serviceMonitor": False})
    prunable = {"Ingress": (stale,), "HTTPRoute": (foreign,)}
    plan = make_plan(_snapshot(bare, base, prunable), datetime.now(UTC), "chute-operator")
    assert [(p.kind, p.name) for p in plan.prune] == [("Ingress", "invalid")]
    assert {"InferencePool", "HTTPRoute", "Ingress"} <= set(PRUNABLE)


def test_bad_expose_input_names_the_field() -> None:
    with pytest.raises(InvalidChute, match=r"spec\.expose\.httpRoute\.path must start with '/'"):
        parse_chute(chute_with(expose={"httpRoute": {**GW, "path": "v1"}}))
    with pytest.raises(InvalidChute, match=r"rewritePrefix needs spec\.expose\.httpRoute\.path"):
        parse_chute(chute_with(expose={"httpRoute": {**GW, "rewritePrefix": "/"}}))
