"""Two Chutes never share an activator port, as the operator gives them and as the activator reads them
from the statuses: a port the operator gives one Chute is never still named by another's status or
still the port of another's activator EndpointSlice."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from chute_activator.derive import activator_port
from chute_activator.state import port_owner
from chute_operator.activator_ports import ActivatorPorts
from chute_operator.gpus import builtin_catalog
from chute_operator.metrics import OperatorMetrics
from chute_operator.reconcile import Reconciler, RetryLater
from chute_operator.store import Store
from chute_operator.workload import RenderOptions
from chute_operator.zero import Activator
from tests.chutes import cpu_chute
from tests.unit.chute_operator.test_activator_ports import chute
from tests.unit.chute_operator.test_reconcile import FakeApi

A, B = ("team-a", "llm"), ("team-b", "secret")
ONE_PORT = (20000, 20000)
"""A range with one port left: the next Chute gets whichever port was freed last."""


def _chute(key: tuple[str, str], created: str, version: str, **spec: Any) -> dict[str, Any]:
    metadata = {
        "namespace": key[0],
        "uid": f"uid-{key[1]}",
        "generation": 1,
        "resourceVersion": version,
        "creationTimestamp": created,
    }
    return cpu_chute(key[1], metadata, monitoring={"serviceMonitor": False}, minInstances=0, **spec)


def _setup(status_wait_seconds: float = 0.0) -> tuple[Reconciler, Store]:
    store = Store()
    reconciler = Reconciler(
        FakeApi(store),  # type: ignore[arg-type]
        store,
        RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test"),
        OperatorMetrics(),
        lambda: True,
        status_wait_seconds=status_wait_seconds,
        activator=lambda: Activator(("10.0.0.9",)),
        activator_ports=ONE_PORT,
    )
    return reconciler, store


async def _reconcile(reconciler: Reconciler, key: tuple[str, str]) -> None:
    with contextlib.suppress(RetryLater):
        await reconciler.reconcile(key)


def _activator_owner(store: Store, port: int) -> tuple[str, str] | None:
    """Whom the activator sends port ``port`` to, from the Chutes' statuses (as Holder.update claims)."""
    claims = {}
    for key in store.keys("Chute"):
        found = store.get("Chute", key) or {}
        if found["metadata"].get("deletionTimestamp"):
            continue  # chute_state(): a Chute being deleted claims nothing
        if activator_port(found) == port:
            claims[key] = str(found["metadata"].get("creationTimestamp") or "")
    return port_owner(claims)


def _slice_port(store: Store, key: tuple[str, str]) -> int | None:
    piece = store.get("EndpointSlice", (key[0], key[1] + "-activator"))
    return piece["ports"][0]["port"] if piece else None


async def test_a_port_given_up_is_not_given_again_while_its_old_chutes_status_still_names_it() -> None:
    reconciler, store = _setup(status_wait_seconds=30.0)
    store.put("Chute", _chute(A, "2026-01-01T00:00:00Z", "1"))
    await _reconcile(reconciler, A)
    assert _slice_port(store, A) == 20000
    assert (store.get("Chute", A) or {})["status"]["activatorPort"] == 20000
    # A's owner: minInstances 1 and a new image, in one edit (the Deployment is applied: the status waits).
    flipped = copy.deepcopy(store.get("Chute", A))
    assert flipped is not None
    flipped["spec"].update(minInstances=1, image="ghcr.io/huggingface/text-embeddings-inference:cpu-1.9")
    flipped["metadata"].update(generation=2, resourceVersion="9000")
    store.put("Chute", flipped)
    await _reconcile(reconciler, A)
    assert _slice_port(store, A) is None
    # B is created meanwhile: the one port is still named by A's status, so B gets none yet (before,
    # it got 20000, and the activator sent B's Service's connections to A, whose status named it).
    store.put("Chute", _chute(B, "2026-02-01T00:00:00Z", "9001"))
    await _reconcile(reconciler, B)
    assert _slice_port(store, B) is None
    assert _activator_owner(store, 20000) == A


async def test_a_port_is_not_given_again_while_a_deleted_chutes_slice_still_points_at_it() -> None:
    reconciler, store = _setup()
    store.put("Chute", _chute(A, "2026-01-01T00:00:00Z", "1"))
    await _reconcile(reconciler, A)
    assert _slice_port(store, A) == 20000
    deleting = copy.deepcopy(store.get("Chute", A))
    assert deleting is not None
    deleting["metadata"].update(
        deletionTimestamp="2026-03-01T00:00:00Z", finalizers=["example.com/backup"], resourceVersion="9000"
    )
    store.put("Chute", deleting)
    await _reconcile(reconciler, A)
    assert _slice_port(store, A) == 20000  # owned by A: the garbage collector deletes it once A is gone
    store.put("Chute", _chute(B, "2026-02-01T00:00:00Z", "9001"))
    await _reconcile(reconciler, B)
    assert _slice_port(store, B) != _slice_port(store, A), "A's Service reaches B through the activator"


def test_a_status_edited_to_another_chutes_port_is_settled_alike_by_the_operator_and_the_activator() -> None:
    known = [chute(*A, 20000, "2026-01-01T00:00:00Z"), chute(*B, 20001, "2026-02-01T00:00:00Z")]
    ports = ActivatorPorts((20000, 20001), lambda: known)
    assert ports.port_for(known[0]) == 20000
    assert ports.port_for(known[1]) == 20001
    known[0]["status"]["activatorPort"] = 20001  # a cluster admin edits A's status to B's port
    # the operator, reconciling A after the edit: A keeps 20000 (its status is rewritten), B keeps 20001
    assert ports.port_for(known[0]) == 20000
    assert ports.port_for(known[1]) == 20001
    claims = {A: "2026-01-01T00:00:00Z", B: "2026-02-01T00:00:00Z"}  # both statuses name 20001
    assert port_owner(claims) is None  # until A's status is rewritten, the activator serves neither on 20001


async def test_a_chute_at_zero_that_loses_its_port_is_woken_or_keeps_its_slice() -> None:
    store = Store()
    api = FakeApi(store)
    managers: list[str | None] = []
    applying = api.apply

    async def apply(manifest: dict[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        managers.append(field_manager)
        return await applying(manifest, field_manager)

    api.apply = apply  # type: ignore[method-assign]

    def operator(ports: tuple[int, int]) -> Reconciler:
        return Reconciler(
            api,  # type: ignore[arg-type]
            store,
            RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test"),
            OperatorMetrics(),
            lambda: True,
            activator=lambda: Activator(("10.0.0.9",)),
            activator_ports=ports,
        )

    store.put("Chute", _chute(A, "2026-02-01T00:00:00Z", "1"))
    await _reconcile(operator((25000, 25000)), A)  # the old range
    assert _slice_port(store, A) == 25000
    asleep = copy.deepcopy(store.get("Deployment", A))
    assert asleep is not None
    asleep["spec"]["replicas"] = 0
    asleep["metadata"]["annotations"] = {"chutes.ai/scaled-to-zero-at": "2026-03-01T00:00:00.000000Z"}
    asleep["metadata"]["resourceVersion"] = "9000"
    store.put("Deployment", asleep)
    older = _chute(B, "2026-01-01T00:00:00Z", "9001")
    older["status"] = {"activatorPort": 20000}
    store.put("Chute", older)
    restarted = operator((20000, 20000))  # the range changed (narrowed) with the operator's restart
    api.writes.clear()
    managers.clear()
    await _reconcile(restarted, A)
    slice_deleted = ("delete", "EndpointSlice") in api.writes
    woken = "chute-operator-zero" in managers
    assert woken or not slice_deleted, "A stays at zero and its Service lost the activator: unreachable"
