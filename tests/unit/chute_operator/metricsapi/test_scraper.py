"""The scraper never dials a pod on a simulated or unknown node; it reads the rest on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from yarl import URL

from chute_operator.metricsapi.samples import Samples
from chute_operator.metricsapi.scraper import NodeKinds, Scraper, read_address_overrides
from chute_operator.metricsapi.service import ScraperCollector, autoscaled_pods
from chute_operator.metricsapi.targets import SKIPPED_NODE_UNKNOWN, SKIPPED_SIMULATED, is_simulated_node
from chute_operator.store import Store
from chute_shared.cluster import CHUTE_LABEL, SIDECAR_CONTAINER
from chute_shared.paths import CONN_STATS_PATH


class CountingListener:
    """A loopback port that counts connections and answers like a sidecar's /_conn_stats."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        body = json.dumps({"concurrency": 4, "in_flight": 1, "utilization": 0.25, "idle_secs": None}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]


@pytest.fixture
async def listener() -> AsyncIterator[CountingListener]:
    server = CountingListener()
    await server.start()
    yield server
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()


def pod(name: str, node: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {
            "nodeName": node,
            "initContainers": [
                {"name": SIDECAR_CONTAINER, "ports": [{"name": "metrics", "containerPort": port}]}
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


NODES: dict[str, dict[str, Any] | None] = {
    "real": {"metadata": {"name": "real"}},
    "sim": {"metadata": {"name": "sim", "labels": {"type": "kwok"}}},
}


async def test_only_pods_on_known_real_nodes_are_dialled(listener: CountingListener) -> None:
    looked_up: list[str] = []

    async def lookup(name: str) -> dict[str, Any] | None:
        looked_up.append(name)
        if name == "broken":
            raise OSError("API unreachable")
        return NODES.get(name)

    pods = [pod("on-sim", "sim", listener.port), pod("on-broken", "broken", listener.port)]
    pods.append(pod("on-missing", "missing", listener.port))
    samples = Samples(max_age=10)
    scraper = Scraper(lambda: pods, NodeKinds(lookup, is_simulated_node), samples)
    try:
        await scraper.scrape_once()
        assert listener.connections == 0
        assert scraper.reasons == {
            ("ns", "on-sim"): SKIPPED_SIMULATED,
            ("ns", "on-broken"): SKIPPED_NODE_UNKNOWN,
            ("ns", "on-missing"): SKIPPED_NODE_UNKNOWN,
        }
        pods.append(pod("on-real", "real", listener.port))
        await scraper.scrape_once()
        assert listener.connections == 1
        # a failed or empty lookup waits before it is tried again
        assert (looked_up.count("broken"), looked_up.count("missing")) == (1, 1)
        sample = samples.fresh(("ns", "on-real"), time.monotonic())
        assert sample is not None
        assert sample.utilization == 0.25
        assert sample.idle_seconds is None  # busy
        registry = CollectorRegistry()
        registry.register(ScraperCollector(scraper))
        exposition = generate_latest(registry).decode()
        assert 'chute_operator_metrics_api_sidecar_reads_total{result="ok"} 1.0' in exposition
        assert 'chute_operator_metrics_api_pods{state="unread"} 3.0' in exposition
    finally:
        await scraper.close()


def test_override_file_keeps_loopback_entries_only(tmp_path: Path) -> None:
    path = tmp_path / "addresses.json"
    path.write_text(json.dumps({"ns/a": "127.0.0.1:9090", "ns/b": "10.244.0.3:9090", "ns/c": "[::1]:1"}))
    assert read_address_overrides(str(path)) == {"ns/a": "127.0.0.1:9090", "ns/c": "[::1]:1"}
    assert read_address_overrides(None) == {}
    path.write_text("not json")
    assert read_address_overrides(str(path)) == {}


def test_only_pods_of_chutes_with_an_hpa_are_read() -> None:
    store = Store()
    for name, chute in (("auto-1", "auto"), ("auto-2", "auto"), ("fixed-1", "fixed")):
        store.put("Pod", {"metadata": {"namespace": "ns", "name": name, "labels": {CHUTE_LABEL: chute}}})
    store.put(
        "HorizontalPodAutoscaler",
        {"metadata": {"namespace": "ns", "name": "auto", "labels": {CHUTE_LABEL: "auto"}}},
    )
    assert sorted(p["metadata"]["name"] for p in autoscaled_pods(store)) == ["auto-1", "auto-2"]


def test_the_override_file_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "addresses.json"
    path.write_text(json.dumps({"ns/a": "127.0.0.1:9090"}))
    nodes = NodeKinds(_no_node, is_simulated_node)
    scraper = Scraper(list, nodes, Samples(10), test_only_address_file=str(path))
    first = scraper._address_overrides()
    assert first == {"ns/a": "127.0.0.1:9090"}
    assert scraper._address_overrides() is first  # unchanged: not parsed again
    path.write_text(json.dumps({"ns/a": "127.0.0.1:9090", "ns/b": "127.0.0.2:9090"}))
    assert scraper._address_overrides() == {"ns/a": "127.0.0.1:9090", "ns/b": "127.0.0.2:9090"}
    path.unlink()
    assert scraper._address_overrides() == {}


@pytest.mark.parametrize("address", ["127.0.0.1:9090", "[::1]:9090", "10.244.1.7:9090", "[fd00::7]:1"])
def test_a_sidecar_url_built_once_is_the_one_a_string_gives(address: str) -> None:
    scraper = Scraper(list, NodeKinds(_no_node, is_simulated_node), Samples(10))
    assert scraper._url(address) == URL(f"http://{address}{CONN_STATS_PATH}")


async def _no_node(name: str) -> None:
    return None
