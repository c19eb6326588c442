"""The reconciler's memory of each Deployment's pod template as of the last generation its controller saw."""

from __future__ import annotations

from typing import Any

from chute_operator.settled import SettledTemplates


def _deployment(image: str, generation: int, observed: int, uid: str = "u1") -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "generation": generation},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "model", "image": image}]}}},
        "status": {"observedGeneration": observed},
    }


def test_a_template_seen_settled_stays_settled_while_only_the_generation_moves() -> None:
    memory = SettledTemplates()
    assert memory.settled(_deployment("a", 1, 1))
    assert memory.settled(_deployment("a", 2, 1))


def test_a_changed_template_is_not_settled_until_its_controller_observes_it() -> None:
    memory = SettledTemplates()
    assert memory.settled(_deployment("a", 1, 1))
    assert not memory.settled(_deployment("b", 2, 1))
    assert memory.settled(_deployment("b", 2, 2))


def test_nothing_is_settled_that_was_never_seen_observed() -> None:
    memory = SettledTemplates()
    assert not memory.settled(_deployment("a", 2, 1))
    assert memory.settled(_deployment("a", 1, 1))
    assert not memory.settled(_deployment("a", 3, 2, uid="u2")), "a new Deployment of the same name"


def test_forget_drops_a_deployment() -> None:
    memory = SettledTemplates()
    memory.settled(_deployment("a", 1, 1))
    memory.forget("u1")
    assert not memory.settled(_deployment("a", 2, 1))
