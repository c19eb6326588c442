"""The activator's pods (and slices) indexed by Chute: the same answers as a scan of every cached pod,
through adds, changes, deletions, relabels and relists, at the cost of the Chute's own pods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightkube.resources.core_v1 import Pod
from lightkube.resources.discovery_v1 import EndpointSlice

from chute_activator import kube
from chute_activator.derive import chute_of, serving_address
from chute_activator.holding import Holder
from chute_activator.kube import KubeSource
from chute_activator.metrics import Metrics
from chute_activator.state import Key
from chute_shared.cluster import CHUTE_LABEL, SIDECAR_CONTAINER
from chute_shared.ports import SERVING_PORT_NAME

NAMESPACES = ("a", "b")
CHUTES = ("x", "y", "z")
NAMES = tuple(f"p{i}" for i in range(5))


def pod(namespace: str, name: str, chute: str | None, ip: int, running: bool = True) -> dict[str, Any]:
    labels = {CHUTE_LABEL: chute} if chute else {}
    state: dict[str, Any] = {"running": {}} if running else {"waiting": {}}
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"initContainers": [{"name": SIDECAR_CONTAINER,
                                     "ports": [{"name": SERVING_PORT_NAME, "containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": f"10.0.0.{ip}",
                   "initContainerStatuses": [{"name": SIDECAR_CONTAINER, "state": state}]},
    }  # fmt: skip


class Listing:
    """What lightkube's list answers: the objects, and the listing's resourceVersion."""

    resourceVersion = "7"

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for item in self.items:
            yield item


class Client:
    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}

    def list(self, resource: Any, namespace: str, labels: Any = None) -> Listing:
        return Listing([p for (ns, _), p in sorted(self.pods.items()) if ns == namespace])


def source_with(client: Any = None) -> KubeSource:
    async def wake(key: Key) -> None:
        pass

    return KubeSource(client, Holder(wake, Metrics()), NAMESPACES)


def scanned(pods: dict[tuple[str, str], dict[str, Any]], key: Key) -> list[str]:
    """The addresses as a scan of every pod finds them (what _addresses did before the index)."""
    return [
        address
        for (namespace, _), p in sorted(pods.items())
        if namespace == key[0] and chute_of(p) == key[1] and (address := serving_address(p))
    ]


operation = st.one_of(
    st.tuples(
        st.just("put"),
        st.sampled_from(NAMESPACES),
        st.sampled_from(NAMES),
        st.sampled_from((*CHUTES, None)),
        st.integers(1, 250),
        st.booleans(),
    ),
    st.tuples(st.just("delete"), st.sampled_from(NAMESPACES), st.sampled_from(NAMES)),
    st.tuples(st.just("relist"), st.sampled_from(NAMESPACES)),
    st.tuples(st.just("silent"), st.sampled_from(NAMESPACES), st.sampled_from(NAMES)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=40))
def test_the_index_answers_as_a_scan_of_every_pod_would(operations: list[tuple[Any, ...]]) -> None:
    """Pods added, changed (a relabel to another Chute or none, a sidecar stopped), deleted, deleted
    without an event (a watch gap) and relisted: the Chute's addresses are the truth's, in order."""
    client = Client()
    source = source_with(client)
    for op in operations:
        if op[0] == "put":
            _, namespace, name, chute, ip, running = op
            obj = pod(namespace, name, chute, ip, running)
            client.pods[namespace, name] = obj
            source._event(Pod, "MODIFIED", obj)
        elif op[0] == "delete":
            gone = client.pods.pop((op[1], op[2]), None)
            if gone is not None:
                source._event(Pod, "DELETED", gone)
        elif op[0] == "silent":
            client.pods.pop((op[1], op[2]), None)  # the watch missed it: a relist must forget it
        else:
            asyncio.run(source._relist(Pod, op[1]))
        for namespace in NAMESPACES:
            for chute in CHUTES:
                key = (namespace, chute)
                assert source._addresses(key) == scanned(dict(source.pods.items()), key)
    for namespace in NAMESPACES:
        asyncio.run(source._relist(Pod, namespace))
    for namespace in NAMESPACES:
        for chute in CHUTES:
            assert source._addresses((namespace, chute)) == scanned(client.pods, (namespace, chute))


def test_a_chutes_slices_come_from_the_index_through_relabels_and_deletions() -> None:
    source = source_with()

    def piece(name: str, chute: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "a", "name": name, "labels": {CHUTE_LABEL: chute}}}

    source._event(EndpointSlice, "ADDED", piece("s1", "x"))
    source._event(EndpointSlice, "ADDED", piece("s2", "x"))
    source._event(EndpointSlice, "ADDED", piece("s3", "y"))
    assert [s["metadata"]["name"] for s in source.slices.of_chute(("a", "x"))] == ["s1", "s2"]
    source._event(EndpointSlice, "MODIFIED", piece("s2", "y"))  # relabelled
    assert [s["metadata"]["name"] for s in source.slices.of_chute(("a", "x"))] == ["s1"]
    assert [s["metadata"]["name"] for s in source.slices.of_chute(("a", "y"))] == ["s2", "s3"]
    source._event(EndpointSlice, "DELETED", piece("s1", "x"))
    assert source.slices.of_chute(("a", "x")) == []


def test_a_lookup_reads_the_chutes_own_pods_only(monkeypatch: pytest.MonkeyPatch) -> None:
    source = source_with()
    for i in range(300):
        source._event(Pod, "ADDED", pod("a", f"p{i:03d}", f"c{i // 3}", i % 250))
    looked_at: list[str] = []
    labels_read: list[str] = []

    def counting_address(obj: dict[str, Any]) -> str | None:
        looked_at.append(obj["metadata"]["name"])
        return serving_address(obj)

    def counting_chute_of(obj: dict[str, Any]) -> str:
        labels_read.append(obj["metadata"]["name"])
        return chute_of(obj)

    monkeypatch.setattr(kube, "serving_address", counting_address)
    monkeypatch.setattr(kube, "chute_of", counting_chute_of)
    assert len(source._addresses(("a", "c50"))) == 3
    assert looked_at == ["p150", "p151", "p152"]
    assert labels_read == []
