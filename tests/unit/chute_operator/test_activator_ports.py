"""The activator's port per Chute: given once, kept, never two Chutes on one port."""

from __future__ import annotations

from typing import Any

from chute_operator.activator_ports import ActivatorPorts

RANGE = (20000, 20003)


def chute(
    namespace: str, name: str, port: int | None = None, created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    status = {"activatorPort": port} if port is not None else {}
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
        "status": status,
    }


def test_each_chute_gets_its_own_port_and_keeps_it() -> None:
    ports = ActivatorPorts(RANGE, list)
    given = {name: ports.port_for(chute("ns", name)) for name in "abcd"}
    assert sorted(given.values()) == [20000, 20001, 20002, 20003]
    assert ports.port_for(chute("ns", "a")) == given["a"]  # asked again: the same
    assert ports.port_for(chute("ns", "e")) is None  # every port taken
    ports.release(("ns", "b"))
    assert ports.port_for(chute("ns", "e")) == given["b"]


def test_a_restarted_operator_keeps_every_port_its_statuses_name_even_for_chutes_reconciled_later() -> None:
    """Seeded from the whole store: a new Chute reconciled first never takes the port of one that has
    it in its status but is reconciled later."""
    known = [chute("ns", "old", 20002)]
    ports = ActivatorPorts(RANGE, lambda: known)
    fresh = [ports.port_for(chute("ns", f"new-{i}")) for i in range(3)]
    assert 20002 not in fresh
    assert ports.port_for(known[0]) == 20002


def test_two_statuses_naming_one_port_the_older_chute_keeps_it_the_other_moves() -> None:
    older = chute("a", "x", 20001, "2026-01-01T00:00:00Z")
    forged = chute("b", "y", 20001, "2026-03-01T00:00:00Z")  # a status written by hand
    ports = ActivatorPorts(RANGE, lambda: [forged, older])
    assert ports.port_for(older) == 20001
    assert ports.port_for(forged) not in (20001, None)
    late = ActivatorPorts(RANGE, list)  # the younger asked first, before the older's status was seen
    assert late.port_for(forged) == 20001
    assert late.port_for(older) not in (20001, None)  # the one that has it keeps it: no port moves


def test_a_port_given_up_is_given_again_only_once_no_status_and_no_slice_names_it() -> None:
    gone = chute("ns", "gone", 20000)
    known: list[dict[str, Any]] = [gone]
    slices: list[dict[str, Any]] = [
        {
            "metadata": {"namespace": "ns", "name": "gone-activator"},
            "ports": [{"name": "http", "port": 20001}],
        }
    ]
    ports = ActivatorPorts((20000, 20001), lambda: known, lambda: slices)
    assert ports.port_for(gone) == 20000
    ports.release(("ns", "gone"))  # minInstances 1 now; its status and an old slice still name ports
    assert ports.port_for(chute("ns", "new")) is None
    known.clear()
    assert ports.port_for(chute("ns", "new")) == 20000
    slices.clear()
    assert ports.port_for(chute("ns", "newer")) == 20001


def test_a_port_outside_the_range_is_replaced_and_a_reset_reads_the_store_again() -> None:
    known = [chute("ns", "a", 40000)]
    ports = ActivatorPorts(RANGE, lambda: known)
    assert RANGE[0] <= (ports.port_for(known[0]) or 0) <= RANGE[1]
    known.append(chute("ns", "b", 20003))
    ports.reset()  # a new leader: the other leader gave ports meanwhile
    assert ports.held(("ns", "b")) == 20003
