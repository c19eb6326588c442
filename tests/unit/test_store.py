"""The store keeps the newest version of each object and finds a Chute's children by label."""

from __future__ import annotations

from typing import Any

from chute_operator.store import Store


def _pod(name: str, chute: str | None, version: str = "1", uid: str = "u") -> dict[str, Any]:
    labels = {"chutes.ai/chute": chute} if chute else {}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"{uid}-{name}",
            "resourceVersion": version,
            "labels": labels,
        }
    }


def test_children_follow_puts_relabels_and_removals() -> None:
    store = Store()
    store.put("Pod", _pod("a-1", "a"))
    store.put("Pod", _pod("a-2", "a"))
    store.put("Pod", _pod("b-1", "b"))
    store.put("Pod", _pod("loose", None))
    assert sorted(p["metadata"]["name"] for p in store.children("Pod", ("ns", "a"))) == ["a-1", "a-2"]
    assert store.children("Pod", ("other", "a")) == []
    store.put("Pod", _pod("a-2", "b", version="2"))  # relabelled
    assert [p["metadata"]["name"] for p in store.children("Pod", ("ns", "a"))] == ["a-1"]
    assert sorted(p["metadata"]["name"] for p in store.children("Pod", ("ns", "b"))) == ["a-2", "b-1"]
    store.remove("Pod", ("ns", "a-1"))
    assert store.children("Pod", ("ns", "a")) == []


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = Store()
    store.put("Pod", _pod("a-1", "a", version="5"))
    store.put("Pod", _pod("a-1", "b", version="4"))
    assert store.get("Pod", ("ns", "a-1"))["metadata"]["resourceVersion"] == "5"  # type: ignore[index]
    assert len(store.children("Pod", ("ns", "a"))) == 1
    assert store.children("Pod", ("ns", "b")) == []
