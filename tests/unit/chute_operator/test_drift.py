"""Drift: desired must be contained in what the API server stores."""

from __future__ import annotations

import copy
from decimal import Decimal

from chute_operator.drift import contained, drifted, quantity


def test_server_defaults_and_foreign_labels_are_not_drift() -> None:
    desired = {
        "metadata": {"labels": {"a": "1"}},
        "spec": {"replicas": 2, "template": {"x": [{"name": "m"}]}},
    }
    actual = {
        "metadata": {
            "labels": {"a": "1", "team": "ml"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
        },
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {"x": [{"name": "m", "tty": False}]},
        },
    }
    assert not drifted(desired, actual)


def test_hand_edits_are_drift() -> None:
    desired = {"spec": {"replicas": 2, "image": "a:1"}}
    assert drifted(desired, {"spec": {"replicas": 5, "image": "a:1"}})
    assert drifted(desired, {"spec": {"replicas": 2, "image": "b:1"}})
    assert drifted(desired, {"spec": {"replicas": 2}})
    assert drifted(desired, None)


def test_lists_must_match_item_by_item() -> None:
    assert contained([{"a": 1}], [{"a": 1, "b": 2}])
    assert not contained([{"a": 1}], [{"a": 1}, {"a": 2}])
    assert not contained([{"a": 1}, {"a": 2}], [{"a": 2}, {"a": 1}])


def test_quantities_and_numbers_compare_by_value() -> None:
    assert quantity("1Gi") == Decimal(1024**3)
    assert quantity("500m") == Decimal("0.5")
    assert quantity("lots") is None
    assert contained({"cpu": "1000m", "gpu": 2, "mem": "1024Mi"}, {"cpu": "1", "gpu": "2", "mem": "1Gi"})
    assert not contained({"cpu": "2"}, {"cpu": "1"})
    assert not contained({"enabled": True}, {"enabled": "True"})


def test_replicas_ownership_is_read_from_managed_fields() -> None:
    from chute_operator.plan import owns_replicas

    deployment = {
        "metadata": {
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}},
                {
                    "manager": "chute-operator",
                    "operation": "Apply",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                },
            ]
        }
    }
    assert owns_replicas(deployment, "chute-operator")
    assert not owns_replicas(deployment, "someone-else")
    assert not owns_replicas({"metadata": {}}, "chute-operator")


def test_a_field_removed_from_the_desired_object_is_drift_through_its_hash() -> None:
    from chute_operator.drift import DESIRED_HASH, stamped

    before = stamped({"metadata": {"name": "a"}, "spec": {"cpu": "1", "memory": "1Gi", "env": ["A", "B"]}})
    after = stamped({"metadata": {"name": "a"}, "spec": {"memory": "1Gi", "env": ["A", "B"]}})
    live = {
        "metadata": {"name": "a", "annotations": dict(before["metadata"]["annotations"]), "uid": "u"},
        "spec": {"cpu": "1", "memory": "1Gi", "env": ["A", "B"], "defaulted": True},
    }
    assert not drifted(before, live)
    assert contained({k: v for k, v in after.items() if k != "metadata"}, live)  # containment alone misses it
    assert drifted(after, live)
    assert before["metadata"]["annotations"][DESIRED_HASH] != after["metadata"]["annotations"][DESIRED_HASH]


def test_the_desired_hash_ignores_key_order_and_keeps_other_annotations() -> None:
    from chute_operator.drift import DESIRED_HASH, stamped

    one = stamped({"metadata": {"name": "a", "annotations": {"x": "1"}}, "spec": {"a": 1, "b": 2}})
    two = stamped({"spec": {"b": 2, "a": 1}, "metadata": {"annotations": {"x": "1"}, "name": "a"}})
    assert one == two
    assert one["metadata"]["annotations"]["x"] == "1"
    assert stamped(one) == one  # stamping twice changes nothing
    assert len(one["metadata"]["annotations"][DESIRED_HASH]) >= 16


def test_the_stamp_leaves_the_manifest_it_was_given_as_it_was() -> None:
    from chute_operator.drift import DESIRED_HASH, stamped

    given = {"metadata": {"name": "a", "annotations": {"x": "1", DESIRED_HASH: "old"}}, "spec": {"a": 1}}
    before = copy.deepcopy(given)
    result = stamped(given)
    result["metadata"]["annotations"]["y"] = "2"
    result["metadata"]["labels"] = {"z": "3"}
    assert given == before
    unstamped = {"metadata": {"name": "a", "annotations": {"x": "1"}}, "spec": {"a": 1}}
    assert stamped(unstamped) == stamped(before)
