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


def test_a_put_says_whether_the_store_changed() -> None:
    """The controller queues no reconcile for a version the store already holds (the echo of the
    operator's own write) or an older one."""
    store = Store()
    assert store.put("Pod", _pod("a-1", "a", version="5"))
    assert not store.put("Pod", _pod("a-1", "a", version="5"))
    assert not store.put("Pod", _pod("a-1", "a", version="4"))
    assert store.put("Pod", _pod("a-1", "a", version="6"))
    assert store.put("Pod", _pod("a-1", "a", version="2", uid="new"))  # deleted and created again


def test_a_late_deleted_event_keeps_a_newer_object_of_the_same_name() -> None:
    store = Store()
    store.put("Pod", _pod("a-1", "a", version="5", uid="old"))
    store.put("Pod", _pod("a-1", "a", version="9", uid="new"))  # deleted and created again
    store.remove("Pod", ("ns", "a-1"), uid="old-a-1")  # the old object's DELETED, arriving late
    assert store.get("Pod", ("ns", "a-1"))["metadata"]["uid"] == "new-a-1"  # type: ignore[index]
    assert len(store.children("Pod", ("ns", "a"))) == 1
    store.remove("Pod", ("ns", "a-1"), uid="new-a-1")
    assert store.get("Pod", ("ns", "a-1")) is None
    assert store.children("Pod", ("ns", "a")) == []


def test_a_relist_forgets_objects_whose_deleted_event_was_missed() -> None:
    store = Store()
    store.put("Pod", _pod("a-1", "a", version="3"))
    store.put("Pod", _pod("a-2", "a", version="4"))
    store.put("Pod", _pod("b-1", "b", version="5"))
    # a-2 was deleted while the watch was down; a-3 appeared; the listing was taken at version 10
    store.replace(
        "Pod", [_pod("a-1", "a", version="3"), _pod("a-3", "a", version="8"), _pod("b-1", "b", "5")], "10"
    )
    assert sorted(p["metadata"]["name"] for p in store.children("Pod", ("ns", "a"))) == ["a-1", "a-3"]
    assert store.get("Pod", ("ns", "a-2")) is None


def test_a_relist_keeps_what_the_watch_delivered_after_the_listing() -> None:
    store = Store()
    store.put("Pod", _pod("a-1", "a", version="3"))
    store.put("Pod", _pod("a-9", "a", version="12"))  # created after the listing below was taken
    store.replace("Pod", [_pod("a-1", "a", version="3")], "10")
    assert sorted(p["metadata"]["name"] for p in store.children("Pod", ("ns", "a"))) == ["a-1", "a-9"]


def test_a_relist_limited_to_namespaces_leaves_the_others_alone() -> None:
    store = Store()
    store.put("Pod", _pod("a-1", "a", version="3"))
    other = _pod("x-1", "x", version="4")
    other["metadata"]["namespace"] = "elsewhere"
    store.put("Pod", other)
    store.replace("Pod", [], "10", namespaces=("ns",))
    assert store.get("Pod", ("ns", "a-1")) is None
    assert store.get("Pod", ("elsewhere", "x-1")) is not None


def test_managed_fields_are_not_kept_except_a_deployments_applied_ones() -> None:
    """managedFields are most of a Pod's size in memory; only owns_replicas reads them (Deployments,
    Apply entries)."""
    store = Store()
    fields = [
        {"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {}}},
        {"manager": "chute-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]
    pod = _pod("a-1", "a")
    pod["metadata"]["managedFields"] = fields
    store.put("Pod", pod)
    assert "managedFields" not in store.get("Pod", ("ns", "a-1"))["metadata"]  # type: ignore[index]
    assert pod["metadata"]["managedFields"] == fields  # the watch event's body is left alone
    deployment = _pod("a", "a")
    deployment["metadata"]["managedFields"] = fields
    store.put("Deployment", deployment)
    kept = store.get("Deployment", ("ns", "a"))["metadata"]["managedFields"]  # type: ignore[index]
    assert [entry["manager"] for entry in kept] == ["chute-operator"]
    assert [p["metadata"]["name"] for p in store.children("Pod", ("ns", "a"))] == ["a-1"]


def test_a_relist_names_the_chutes_it_changed_and_none_when_nothing_changed() -> None:
    """The owners of what a relist forgot, added or found newer: those Chutes need a reconcile."""
    store = Store()
    store.put("Pod", _pod("a-1", "a", version="3"))
    store.put("Pod", _pod("b-1", "b", version="4"))
    store.put("Pod", _pod("c-1", "c", version="5"))
    listed = [_pod("a-1", "a", version="3"), _pod("c-1", "c", version="9"), _pod("d-1", "d", version="8")]
    assert store.replace("Pod", listed, "10") == {("ns", "b"), ("ns", "c"), ("ns", "d")}
    assert store.replace("Pod", listed, "10") == set()  # nothing new: nothing to reconcile
    chute = {"metadata": {"name": "gone", "namespace": "ns", "uid": "g", "resourceVersion": "2"}}
    store.put("Chute", chute)
    assert store.replace("Chute", [], "10") == {("ns", "gone")}  # deleted during the gap
