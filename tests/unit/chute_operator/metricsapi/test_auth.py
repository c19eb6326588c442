"""Front-proxy authentication and the SubjectAccessReview cache."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from chute_operator.metricsapi.auth import (
    Access,
    Authorizer,
    FrontProxyConfig,
    Unauthenticated,
    User,
    authenticate,
    parse_auth_configmap,
)

CONFIGMAP = {
    "client-ca-file": "CLIENT-CA",
    "requestheader-client-ca-file": "FRONT-PROXY-CA",
    "requestheader-allowed-names": '["front-proxy-client"]',
    "requestheader-username-headers": '["X-Remote-User"]',
    "requestheader-group-headers": '["X-Remote-Group"]',
    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
}
FRONT_PROXY_CERT = {"subject": ((("commonName", "front-proxy-client"),),)}
CONFIG = parse_auth_configmap(CONFIGMAP)


def test_configmap_as_the_apiserver_writes_it() -> None:
    assert (
        FrontProxyConfig(
            client_ca="FRONT-PROXY-CA",
            allowed_names=("front-proxy-client",),
            username_headers=("X-Remote-User",),
            group_headers=("X-Remote-Group",),
            extra_headers_prefixes=("X-Remote-Extra-",),
        )
        == CONFIG
    )
    assert parse_auth_configmap({}).client_ca == ""
    with pytest.raises(ValueError):  # noqa: PT011
        parse_auth_configmap({"requestheader-allowed-names": '"not-a-list"'})


def test_user_groups_and_extras_from_the_headers() -> None:
    headers = CIMultiDict(
        [
            ("X-Remote-User", "system:serviceaccount:kube-system:horizontal-pod-autoscaler"),
            ("X-Remote-Group", "system:serviceaccounts"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-Scopes", "b"),
        ]
    )
    user = authenticate(FRONT_PROXY_CERT, headers, CONFIG)
    assert user == User(
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        ("system:serviceaccounts", "system:authenticated"),
        (("scopes", ("a", "b")),),
    )


@pytest.mark.parametrize(
    ("peercert", "headers", "why"),
    [
        (None, {"X-Remote-User": "alice"}, "no client certificate"),
        ({}, {"X-Remote-User": "alice"}, "no client certificate"),
        ({"subject": ((("commonName", "someone-else"),),)}, {"X-Remote-User": "alice"}, "not an allowed"),
        (FRONT_PROXY_CERT, {}, "named no user"),
        (FRONT_PROXY_CERT, {"X-Remote-User": ""}, "named no user"),
    ],
)
def test_refused(peercert: Any, headers: dict[str, str], why: str) -> None:
    with pytest.raises(Unauthenticated, match=why):
        authenticate(peercert, headers, CONFIG)


def test_any_certificate_of_the_ca_when_no_names_are_listed() -> None:
    config = parse_auth_configmap({**CONFIGMAP, "requestheader-allowed-names": "[]"})
    other = {"subject": ((("commonName", "aggregator"),),)}
    assert authenticate(other, {"X-Remote-User": "bob"}, config).name == "bob"


ACCESS = Access("list", "prod", "pods", "chute_utilization_ratio", "", "custom.metrics.k8s.io", "v1beta2")


async def test_reviews_are_cached_for_the_ttl() -> None:
    specs: list[dict[str, Any]] = []
    now = [0.0]

    async def review(spec: dict[str, Any]) -> dict[str, Any]:
        specs.append(spec)
        return {"allowed": spec["user"] == "hpa", "reason": "RBAC"}

    authorizer = Authorizer(review, ttl=10.0, clock=lambda: now[0])
    hpa, eve = User("hpa", ("system:authenticated",)), User("eve")
    assert (await authorizer.decide(hpa, ACCESS)).allowed
    assert not (await authorizer.decide(eve, ACCESS)).allowed
    now[0] = 9.0
    assert (await authorizer.decide(hpa, ACCESS)).allowed
    assert len(specs) == 2
    now[0] = 10.5
    assert (await authorizer.decide(hpa, ACCESS)).allowed
    assert len(specs) == 3
    assert specs[0] == {
        "user": "hpa",
        "groups": ["system:authenticated"],
        "resourceAttributes": {
            "verb": "list",
            "namespace": "prod",
            "group": "custom.metrics.k8s.io",
            "version": "v1beta2",
            "resource": "pods",
            "subresource": "chute_utilization_ratio",
            "name": "",
        },
    }
