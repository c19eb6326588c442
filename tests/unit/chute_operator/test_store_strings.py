"""The store keeps one copy of each short string: a watch event is decoded on its own, so every stored
object had its own copy of every key and label, about half of a stored Deployment (issue 30: memory
per Chute at 5000 Chutes)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

from chute_operator.store import SharedStrings, Store

OBJECTS = Path(__file__).resolve().parents[2] / "data" / "store" / "bench-children.json"


def _events(kind: str, count: int) -> list[dict[str, Any]]:
    text = json.dumps(json.loads(OBJECTS.read_text())[kind])
    return [json.loads(text.replace('"name": "', f'"name": "n{i}-', 1)) for i in range(count)]


def test_stored_objects_share_their_keys_and_short_values() -> None:
    store = Store()
    for event in _events("Deployment", 2):
        store.put("Deployment", event)
    first, second = (store.get("Deployment", key) for key in store.keys("Deployment"))
    assert first is not None
    assert second is not None
    assert first == json.loads(json.dumps(first))  # the same content
    key_a = next(k for k in first["metadata"] if k == "namespace")
    key_b = next(k for k in second["metadata"] if k == "namespace")
    assert key_a is key_b
    assert first["metadata"]["namespace"] is second["metadata"]["namespace"]
    assert first["spec"]["template"] == second["spec"]["template"]


def test_sharing_saves_a_third_or_more_of_what_deployments_hold() -> None:
    events = _events("Deployment", 300)

    def held(share: bool) -> int:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        store = Store(share)
        for event in events:
            store.put("Deployment", json.loads(json.dumps(event)))
        size = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del store
        return size

    plain, shared = held(False), held(True)
    assert shared < 0.7 * plain, (plain, shared)


def test_the_shared_strings_are_bounded() -> None:
    strings = SharedStrings(capacity=100)
    for i in range(1000):
        strings.copy({"name": f"unique-{i}"})
    assert len(strings) <= 101
    long = "x" * 1000
    assert strings.copy([long])[0] is long  # long strings are not remembered
