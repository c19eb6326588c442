"""The activator's Service publishes no port that serves ``/_chutes`` (every Chute, its pods'
addresses, why it cannot wake): that listing is for whoever runs in the activator's pod only."""

from __future__ import annotations

import ipaddress
from typing import Any

from chute_activator.app import metrics_app
from chute_activator.config import Config, parse_config
from chute_activator.holding import Holder
from chute_activator.metrics import Metrics
from tests.chart.helm import Helm, env_of, one

LISTING = "/_chutes"


def listing_ports(config: Config) -> set[int]:
    """Ports of the activator that serve ``/_chutes`` to another pod (loopback listeners excluded)."""

    async def wake(_: tuple[str, str]) -> None:
        return None

    routes = [
        r.resource.canonical for r in metrics_app(Holder(wake, Metrics())).router.routes() if r.resource
    ]
    found = {config.metrics_port} if LISTING in routes else set()
    if config.debug_port is not None and not ipaddress.ip_address(config.debug_host).is_loopback:
        found.add(config.debug_port)
    return found


def test_the_activator_service_publishes_no_port_that_serves_the_listing(helm: Helm) -> None:
    objects = helm.template()
    pod = one(objects, "Deployment", "co-chute-operator-activator")["spec"]["template"]["spec"]
    container: dict[str, Any] = pod["containers"][0]
    environ = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    config = parse_config(container["args"][1:], environ)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = one(objects, "Service", "co-chute-operator-activator")
    published = {named.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert published, "the Service publishes the serving and metrics ports"
    assert not published & listing_ports(config)
