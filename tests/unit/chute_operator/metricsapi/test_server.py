"""The metrics API over real TLS on loopback, reading a real sidecar (in-process) on loopback.

Front-proxy authentication as the kube-apiserver does it: a client certificate signed by the
request-header CA, the user in X-Remote-User. No pod address is ever dialled: the pods here are
loopback sidecars on a node the test calls real, and a pod on a simulated node that must be skipped.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chute_devcluster.pki import FRONT_PROXY_CLIENT_NAME, KeyPair, _issue, _make_ca
from chute_operator.metricsapi.auth import Authorizer, parse_auth_configmap
from chute_operator.metricsapi.query import Answer
from chute_operator.metricsapi.samples import Samples
from chute_operator.metricsapi.scraper import NodeKinds, Scraper
from chute_operator.metricsapi.server import PREFIX, Security, ServingCertificate, metrics_api_app, server_tls
from chute_operator.metricsapi.targets import SKIPPED_SIMULATED, is_simulated_node
from chute_shared.cluster import SIDECAR_CONTAINER
from chute_shared.metrics import UTILIZATION_METRIC
from chute_sidecar.app import Sidecar
from chute_sidecar.config import Config

NS = "prod"
SERVICE_NAME = "chute-operator-metrics-api.chute-system.svc"


class Certs:
    def __init__(self, directory: Path) -> None:
        self.serving_ca = _make_ca(directory, "serving-ca", "test-serving-ca")
        self.serving = _issue(
            directory, self.serving_ca, "serving", SERVICE_NAME, server_names=(f"DNS:{SERVICE_NAME}",)
        )
        self.front_proxy_ca = _make_ca(directory, "front-proxy-ca", "test-front-proxy-ca")
        self.front_proxy_client = _issue(directory, self.front_proxy_ca, "fp-client", FRONT_PROXY_CLIENT_NAME)
        self.impostor = _issue(directory, self.front_proxy_ca, "impostor", "someone-else")
        self.other_ca = _make_ca(directory, "other-ca", "other-ca")
        self.stranger = _issue(directory, self.other_ca, "stranger", FRONT_PROXY_CLIENT_NAME)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("pki"))


def client_tls(certs: Certs, client: KeyPair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.serving_ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def sidecar_pod(name: str, node: str, ip: str, metrics_port: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NS, "name": name, "labels": {"chutes.ai/chute": "qwen"}},
        "spec": {
            "nodeName": node,
            "initContainers": [
                {"name": SIDECAR_CONTAINER, "ports": [{"name": "metrics", "containerPort": metrics_port}]}
            ],
        },
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


NODES = {
    "real-1": {"metadata": {"name": "real-1", "labels": {"kubernetes.io/hostname": "real-1"}}},
    "sim-h100-0": {"metadata": {"name": "sim-h100-0", "annotations": {"kwok.x-k8s.io/node": "fake"}}},
}


class World:
    """A sidecar, the scraper over two pods and the HTTPS metrics API."""

    def __init__(self, sidecar: Sidecar, certs: Certs, forward: Any = None) -> None:
        self.sidecar = sidecar
        self.looked_up: list[str] = []
        self.reviews: list[dict[str, Any]] = []
        self.pods = [
            sidecar_pod("qwen-real", "real-1", "127.0.0.1", sidecar.metrics_port),
            sidecar_pod("qwen-sim", "sim-h100-0", "10.244.0.9", 9090),
        ]
        self.samples = Samples(max_age=10.0)

        async def lookup(name: str) -> dict[str, Any] | None:
            self.looked_up.append(name)
            return NODES.get(name)

        self.scraper = Scraper(
            lambda: self.pods, NodeKinds(lookup, is_simulated_node), self.samples, timeout=2
        )

        async def review(spec: dict[str, Any]) -> dict[str, Any]:
            self.reviews.append(spec)
            return {"allowed": spec["user"] == "hpa"}

        config = parse_auth_configmap(
            {
                "requestheader-client-ca-file": certs.front_proxy_ca.cert.read_text(),
                "requestheader-allowed-names": f'["{FRONT_PROXY_CLIENT_NAME}"]',
            }
        )
        self.app = metrics_api_app(
            lambda namespace, selector: self.pods,
            self.samples,
            lambda: self.scraper.reasons,
            2,
            Security(lambda: config, Authorizer(review)),
            forward,
        )
        self.tls = server_tls(str(certs.serving.cert), str(certs.serving.key), config.client_ca)
        self.port = 0


@pytest.fixture
def forward() -> Any:
    return None


@pytest.fixture
async def world(certs: Certs, forward: Any) -> AsyncIterator[World]:
    config = Config(
        upstream="http://127.0.0.1:9", port=0, metrics_port=0, admin_port=0, host="127.0.0.1", concurrency=4
    )
    sidecar = Sidecar(config)
    await sidecar.start()
    world = World(sidecar, certs, forward)
    runner = web.AppRunner(world.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=world.tls)
    await site.start()
    world.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield world
    finally:
        await world.scraper.close()
        await runner.cleanup()
        await sidecar.stop()


class LoopbackResolver(aiohttp.abc.AbstractResolver):
    """Resolves every name to 127.0.0.1: the certificate names the Service, the test dials loopback."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def get(
    world: World, certs: Certs, path: str, client: KeyPair | None = None, user: str | None = "hpa"
) -> tuple[int, Any]:
    headers = {}
    if user is not None:
        headers["X-Remote-User"] = user
        headers["X-Remote-Group"] = "system:authenticated"
    connector = aiohttp.TCPConnector(ssl=client_tls(certs, client), resolver=LoopbackResolver())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"https://{SERVICE_NAME}:{world.port}{path}", headers=headers) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


LIST = f"{PREFIX}/namespaces/{NS}/pods/*/{UTILIZATION_METRIC}?labelSelector=chutes.ai%2Fchute%3Dqwen"


async def test_hpa_reads_the_sidecars_utilization_through_front_proxy_auth(
    world: World, certs: Certs
) -> None:
    world.sidecar.limiter.try_acquire()
    world.sidecar.limiter.try_acquire()
    await world.scraper.scrape_once()
    assert world.scraper.reasons == {(NS, "qwen-sim"): SKIPPED_SIMULATED}
    assert sorted(world.looked_up) == ["real-1", "sim-h100-0"]

    status, body = await get(world, certs, LIST, certs.front_proxy_client)
    assert status == 200, body
    assert [(i["describedObject"]["name"], i["value"]) for i in body["items"]] == [("qwen-real", "500m")]
    attributes = world.reviews[-1]["resourceAttributes"]
    assert (attributes["verb"], attributes["name"]) == ("get", "*")  # as the kube-apiserver authorized it

    status, body = await get(
        world, certs, f"{PREFIX}/namespaces/{NS}/pods/qwen-sim/{UTILIZATION_METRIC}", certs.front_proxy_client
    )
    assert status == 404
    assert body["message"].endswith("pod qwen-sim: " + SKIPPED_SIMULATED)
    assert world.reviews[-1]["resourceAttributes"]["name"] == "qwen-sim"


async def test_discovery_and_health(world: World, certs: Certs) -> None:
    status, body = await get(world, certs, PREFIX, certs.front_proxy_client)
    assert status == 200
    assert body["resources"][0]["name"] == f"pods/{UTILIZATION_METRIC}"
    status, body = await get(world, certs, "/apis", certs.front_proxy_client)
    assert body["groups"][0]["preferredVersion"]["version"] == "v1beta2"
    assert (await get(world, certs, "/healthz", None, None))[0] == 200
    assert (await get(world, certs, "/openapi/v2", None, None))[0] == 200


async def test_callers_without_the_front_proxy_identity_are_refused(world: World, certs: Certs) -> None:
    await world.scraper.scrape_once()
    status, body = await get(world, certs, LIST, None)
    assert (status, body["reason"]) == (401, "Unauthorized")
    status, body = await get(world, certs, LIST, certs.impostor)
    assert status == 401
    assert "not an allowed front proxy" in body["message"]
    status, body = await get(world, certs, LIST, certs.front_proxy_client, user=None)
    assert status == 401
    status, body = await get(world, certs, LIST, certs.front_proxy_client, user="eve")
    assert (status, body["reason"]) == (403, "Forbidden")


async def test_a_certificate_from_another_ca_fails_the_handshake(world: World, certs: Certs) -> None:
    with pytest.raises(aiohttp.ClientError):
        await get(world, certs, LIST, certs.stranger)


async def test_a_sidecar_that_stops_answering_drops_out(world: World, certs: Certs) -> None:
    world.samples.max_age = 0.3
    await world.scraper.scrape_once()
    assert (await get(world, certs, LIST, certs.front_proxy_client))[0] == 200
    await world.sidecar.stop()
    await asyncio.sleep(0.4)
    await world.scraper.scrape_once()
    status, body = await get(world, certs, LIST, certs.front_proxy_client)
    assert status == 404
    assert "pod qwen-real: sidecar unreadable" in body["message"]


async def test_a_renewed_serving_certificate_is_used_for_new_connections(
    certs: Certs, tmp_path: Path
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(certs.serving.cert.read_bytes())
    key.write_bytes(certs.serving.key.read_bytes())
    context = server_tls(str(cert), str(key), "")
    certificate = ServingCertificate(context, str(cert), str(key))
    certificate.refresh()
    assert not certificate.refresh()  # unchanged files are not loaded again
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def served_serial() -> int:
        client = ssl.create_default_context(cafile=str(certs.serving_ca.cert))
        client.check_hostname = False
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return hash(der)

    try:
        before = await served_serial()
        renewed = _issue(
            tmp_path, certs.serving_ca, "renewed", SERVICE_NAME, server_names=(f"DNS:{SERVICE_NAME}",)
        )
        cert.write_bytes(renewed.cert.read_bytes())
        key.write_bytes(renewed.key.read_bytes())
        assert certificate.refresh()
        assert await served_serial() != before
    finally:
        await runner.cleanup()


forwarded_asks: list[tuple[str, dict[str, str]]] = []


async def _forward(tail: str, query: Any) -> Answer:
    forwarded_asks.append((tail, dict(query)))
    return Answer(
        200, {"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "items": []}
    )


@pytest.mark.parametrize("forward", [_forward])
async def test_a_forwarded_request_is_authorized_for_its_caller_as_the_kube_apiserver_read_it(
    world: World, certs: Certs
) -> None:
    """The operator reads the other adapter with its own credentials: only for a caller allowed the
    same read (the SubjectAccessReview names what the kube-apiserver authorized)."""
    forwarded_asks.clear()
    status, _ = await get(
        world, certs, f"{PREFIX}/namespaces/{NS}/services/web/hits", certs.front_proxy_client
    )
    assert status == 200
    assert forwarded_asks == [(f"namespaces/{NS}/services/web/hits", {})]
    attributes = world.reviews[-1]["resourceAttributes"]
    assert {k: attributes.get(k) for k in ("verb", "namespace", "resource", "name", "subresource")} == {
        "verb": "get",
        "namespace": NS,
        "resource": "services",
        "name": "web",
        "subresource": "hits",
    }
    status, _ = await get(
        world, certs, f"{PREFIX}/namespaces/{NS}/metrics/queue", certs.front_proxy_client, user="someone"
    )
    assert status == 403
    assert len(forwarded_asks) == 1
    attributes = world.reviews[-1]["resourceAttributes"]
    assert (attributes["namespace"], attributes["resource"], attributes["name"]) == (NS, "metrics", "queue")
