"""``spec.expose`` against the real API server: the HTTPRoute, Ingress and InferencePool are accepted
under the Gateway API's and the inference extension's own CRDs (from the Go module proxy), created
only once their API is served (a condition until then, the Chute Ready all the same), owned, pruned,
never written over a foreign object; ``status.url`` is the external address."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chute_devcluster.gateway_crds import NAMES, install_gateway_crds
from chute_operator.gpus import builtin_catalog
from chute_operator.render import render
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions
from tests.e2e.test_operator import chute, wait_ready
from tests.kube_helpers import apply, condition, eventually, get
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "exposed-chat.yaml"
NAME = "qwen3-exposed"
EXPOSED = ("inferencepool", "httproute", "ingress")
ROUTE = {"parentRefs": [{"name": "gw"}], "hostnames": ["models.example.com"]}
VARIANTS: dict[str, dict[str, Any]] = {
    "route-to-service": {"httpRoute": ROUTE},
    "route-prefix-rewrite": {"httpRoute": {**ROUTE, "path": "/m/x", "rewritePrefix": "/", "scheme": "http"}},
    "route-cords": {"httpRoute": {"parentRefs": [{"name": "gw", "sectionName": "https", "port": 443}],
                                  "matchCords": True}},
    "route-to-pool": {"httpRoute": {**ROUTE, "path": "/p"}, "inferencePool": {}},
    "pool-picker": {"inferencePool": {"endpointPicker": {"name": "epp", "port": 9002,
                                                         "failureMode": "FailOpen"}}},
    "ingress-bare": {"ingress": {}},
    "ingress-full": {"ingress": {"className": "nginx", "host": "a.example.com", "path": "/a",
                                 "tlsSecretName": "a-tls", "annotations": {"x/y": "z"}}},
}  # fmt: skip
"""Every shape of each exposed object (besides the example)."""


def _remove_gateway_crds(cp: Any) -> None:
    cp.kubectl("delete", "crd", "--ignore-not-found", "--wait=true", *NAMES, timeout=180)


def _exposed(cp: Any, name: str, namespace: str) -> dict[str, Any]:
    return condition(get(cp, "chute", name, namespace), "Exposed")


def _url(cp: Any, name: str, namespace: str) -> str:
    return str(((get(cp, "chute", name, namespace) or {}).get("status") or {}).get("url", ""))


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(r["uid"] == uid and r.get("controller") for r in obj["metadata"].get("ownerReferences", []))


def test_exposed_once_the_apis_are_served_ready_before_and_pruned_after(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    _remove_gateway_crds(control_plane)  # the first state: a cluster without the Gateway API
    control_plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    found = wait_ready(control_plane, NAME, namespace)
    uid = found["metadata"]["uid"]
    exposed = eventually(
        lambda: (
            (c := _exposed(control_plane, NAME, namespace)).get("reason") == "InferencePoolApiUnavailable"
            and c
        ),
        what="Exposed=False: no InferencePool or HTTPRoute API",
    )
    assert exposed["status"] == "False"
    assert "InferencePool, HTTPRoute" in exposed["message"]
    ingress = eventually(lambda: get(control_plane, "ingress", NAME, namespace), what="Ingress")
    assert _owned_by(ingress, uid)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": NAME, "port": {"name": "http"}}
    eventually(
        lambda: _url(control_plane, NAME, namespace) == "https://qwen3.example.com", what="the Ingress URL"
    )

    install_gateway_crds(control_plane.kubectl)
    route = eventually(  # to the Service until the InferencePool's API is seen too, then to the pool
        lambda: (
            (r := get(control_plane, "httproute", NAME, namespace))
            and r["spec"]["rules"][0]["backendRefs"][0].get("kind") == "InferencePool"
            and r
        ),
        what="HTTPRoute to the InferencePool",
    )
    pool = eventually(lambda: get(control_plane, "inferencepool", NAME, namespace), what="InferencePool")
    for child in (route, pool):
        assert _owned_by(child, uid)
    assert route["spec"]["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "1805s", "backendRequest": "1805s"}
    assert pool["spec"]["selector"]["matchLabels"] == {"chutes.ai/chute": NAME}
    assert pool["spec"]["targetPorts"] == [{"number": 8080}]
    eventually(
        lambda: _exposed(control_plane, NAME, namespace).get("reason") == "ExposeApplied", what="Exposed=True"
    )
    eventually(
        lambda: _url(control_plane, NAME, namespace) == "https://models.example.com/qwen3",
        what="the route URL",
    )
    assert condition(get(control_plane, "chute", NAME, namespace), "Ready")["status"] == "True"

    patch = {"spec": {"expose": {"httpRoute": None, "ingress": None}}}
    control_plane.kubectl("patch", "chute", NAME, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    for kind in ("httproute", "ingress"):
        eventually(lambda k=kind: get(control_plane, k, NAME, namespace) is None, what=f"{kind} pruned")
    assert get(control_plane, "inferencepool", NAME, namespace) is not None
    eventually(
        lambda: _url(control_plane, NAME, namespace) == f"http://{NAME}.{namespace}.svc.cluster.local",
        what="the in-cluster URL",
    )


def test_every_rendered_shape_is_accepted_by_the_crds(control_plane: Any, namespace: str) -> None:
    install_gateway_crds(control_plane.kubectl)
    options = RenderOptions(catalog=builtin_catalog())
    documents = [yaml.safe_load(EXAMPLE.read_text())]
    documents += [
        {**chute(case), "spec": {**chute(case)["spec"], "expose": e}} for case, e in VARIANTS.items()
    ]
    checked = set()
    for document in documents:
        document["metadata"]["namespace"] = namespace
        for manifest in render(parse_chute(document), options):
            if manifest["kind"] in ("HTTPRoute", "Ingress", "InferencePool"):
                result = control_plane.kubectl(
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "-f",
                    "-",
                    input=json.dumps(manifest),
                    check=False,
                )
                assert result.returncode == 0, f"{document['metadata']['name']}: {result.stderr}"
                checked.add(manifest["kind"])
    assert checked == {"HTTPRoute", "Ingress", "InferencePool"}


def test_a_foreign_route_of_the_name_is_never_written(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    install_gateway_crds(control_plane.kubectl)
    foreign = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "taken"},
        "spec": {"parentRefs": [{"name": "someone-elses"}]},
    }
    apply(control_plane, foreign, namespace)
    before = get(control_plane, "httproute", "taken", namespace)
    assert before is not None
    apply(
        control_plane,
        {**chute("taken"), "spec": {**chute("taken")["spec"], "expose": VARIANTS["route-to-service"]}},
        namespace,
    )
    exposed = eventually(
        lambda: (c := _exposed(control_plane, "taken", namespace)).get("reason") == "ChildConflict" and c,
        what="Exposed=False ChildConflict",
    )
    assert "HTTPRoute taken" in exposed["message"]
    after = get(control_plane, "httproute", "taken", namespace)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")
    assert _url(control_plane, "taken", namespace) == f"http://taken.{namespace}.svc.cluster.local"
