"""The Chute states GitOps tools must read right, each made for real on the local control plane.

One ``State`` per row of the state table in docs/gitops.md: how to bring a live Chute into it (a
spec, sometimes a second change) and how to tell it got there. The e2e test
(tests/e2e/test_gitops.py) and the fixture capture (``python -m tests.gitops.capture``) both use
these, so the fixtures in tests/data/status_fixtures/ are Chutes of the same scenarios.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.kube_helpers import apply, condition, eventually, get

IMAGE = "vllm/vllm-openai:v0.10.1"
NEW_IMAGE = "vllm/vllm-openai:v0.11.0"
LONG_LOAD = {"sim.chutes.ai/ready-after": "900"}
"""A model load that outlasts any test: the pod runs but is not ready."""
FULL_NODE = {"gpuCount": 4, "include": ["l40s"]}
"""A replica that takes a whole l40s node (4 GPUs): two of them fill the l40s pool."""
POOLS_KEPT_FREE = ["l40s", "l4"]
"""Simulated pools (4 GPUs per node) the states that fill a pool use; the other states keep off."""


def chute(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": IMAGE,
        "template": "vllm",
        "model": {"name": "org/model"},
        "nodeSelector": {"gpuCount": 1, "minVramGbPerGpu": 24, "exclude": POOLS_KEPT_FREE},
    }
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


def with_behavior(behavior: str) -> dict[str, Any]:
    return {"pod": {"annotations": {"sim.chutes.ai/behavior": behavior}}}


def _ready(obj: dict[str, Any] | None) -> dict[str, Any]:
    return condition(obj, "Ready")


def _current(obj: dict[str, Any] | None) -> bool:
    """The status describes the Chute's current generation."""
    if not obj:
        return False
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    return (
        status.get("observedGeneration") == generation and _ready(obj).get("observedGeneration") == generation
    )


def ready_reason_is(*reasons: str) -> Callable[[dict[str, Any] | None], bool]:
    def reached(obj: dict[str, Any] | None) -> bool:
        return _current(obj) and _ready(obj).get("reason") in reasons

    return reached


def _serving(obj: dict[str, Any] | None) -> bool:
    return _current(obj) and _ready(obj).get("status") == "True"


def _serving_despite_unschedulable(obj: dict[str, Any] | None) -> bool:
    degraded = condition(obj, "Degraded")
    return _serving(obj) and (degraded.get("status"), degraded.get("reason")) == ("True", "Unschedulable")


def _rolling_out(obj: dict[str, Any] | None) -> bool:
    """Generation 2 observed, its new pod still loading, the old replica still serving."""
    return (
        _current(obj)
        and obj is not None
        and obj["metadata"]["generation"] >= 2
        and _ready(obj).get("status") == "False"
        and condition(obj, "Available").get("status") == "True"
        and condition(obj, "Progressing").get("status") == "True"
    )


def _stale(obj: dict[str, Any] | None) -> bool:
    """A newer generation than the status describes (the operator has not seen the change yet)."""
    if not obj:
        return False
    return bool(obj["metadata"]["generation"] > (obj.get("status") or {}).get("observedGeneration", 0))


def _exists(obj: dict[str, Any] | None) -> bool:
    return obj is not None


Step = Callable[[Any, str, str], None]
"""(control plane, namespace, Chute name) -> None: a change made once the previous step is reached."""


def patch(spec: dict[str, Any]) -> Step:
    def step(cp: Any, namespace: str, name: str) -> None:
        body = json.dumps({"spec": spec})
        cp.kubectl("patch", "chute", name, "-n", namespace, "--type=merge", "-p", body)

    return step


@dataclass(frozen=True)
class State:
    """A row of docs/gitops.md's state table, made live."""

    fixture: str
    """Name of the row and of its fixture file (tests/data/status_fixtures/<fixture>.json)."""
    spec: dict[str, Any]
    reached: Callable[[dict[str, Any] | None], bool]
    before: Callable[[dict[str, Any] | None], bool] | None = None
    """Wait for this first, then make ``change``."""
    change: Step | None = None
    extras: tuple[dict[str, Any], ...] = ()
    """Other Chutes the state needs (created first), e.g. one that fills a GPU pool."""
    pool: str | None = None
    """The simulated GPU pool (sim-<pool>-*) the state fills: it must be free before it starts."""
    needs_operator_stopped: bool = False
    """Only the capture can make it (it stops its own operator); the e2e test skips it."""
    timeout: float = 90.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"gitops-{self.fixture}"

    def manifest(self) -> dict[str, Any]:
        return chute(self.name, **self.spec)

    def create(self, cp: Any, namespace: str) -> None:
        for extra in self.extras:
            apply(cp, extra, namespace)
        apply(cp, self.manifest(), namespace)

    def live(self, cp: Any, namespace: str) -> dict[str, Any] | None:
        return get(cp, "chute", self.name, namespace)

    def reach(self, cp: Any, namespace: str, create: bool = True) -> dict[str, Any]:
        """Create the Chute (unless ``create`` is false), make the change, wait for the state."""
        if create:
            self.create(cp, namespace)
        try:
            if self.before is not None:
                before = self.before
                eventually(lambda: before(self.live(cp, namespace)), what=f"{self.fixture}: before")
            if self.change is not None:
                self.change(cp, namespace, self.name)
            return eventually(
                lambda: (obj := self.live(cp, namespace)) and self.reached(obj) and obj,
                what=self.fixture,
                timeout=self.timeout,
            )
        except AssertionError as error:
            status = (self.live(cp, namespace) or {}).get("status")
            raise AssertionError(f"{error}\nthe Chute's status: {json.dumps(status, indent=1)}") from None


STATES: tuple[State, ...] = (
    State("serving", {}, _serving),
    State("model-loading", {"pod": {"annotations": LONG_LOAD}}, ready_reason_is("ModelLoading")),
    State(
        "rolling-out",
        {},
        _rolling_out,
        before=_serving,
        change=patch({"image": NEW_IMAGE, "pod": {"annotations": LONG_LOAD}}),
    ),
    State(
        "unschedulable",
        {"nodeSelector": {"gpuCount": 8, "include": ["l4"]}},
        ready_reason_is("Unschedulable"),
    ),
    State("crashloop", with_behavior("CrashLoopBackOff"), ready_reason_is("CrashLoopBackOff")),
    State("imagepull", with_behavior("ImagePullBackOff"), ready_reason_is("ImagePullBackOff")),
    State("oomkilled", with_behavior("OOMKilled"), ready_reason_is("OOMKilled")),
    State("probe-failing", with_behavior("ProbeFailing"), ready_reason_is("ProbeFailing")),
    State(
        "invalid-spec",
        {"nodeSelector": {"include": ["l4"], "minVramGbPerGpu": 80}},
        ready_reason_is("InvalidSpec"),
    ),
    State("scaled-to-zero", {"replicas": 0}, ready_reason_is("ScaledToZero")),
    State(
        "no-spare-gpu",
        {"nodeSelector": FULL_NODE},
        ready_reason_is("NoSpareGpu"),
        before=_serving,
        change=patch({"image": NEW_IMAGE}),
        extras=(chute("gitops-no-spare-gpu-filler", nodeSelector=FULL_NODE),),
        pool="l40s",
    ),
    State(
        "serving-short-of-gpus",
        {"nodeSelector": {"gpuCount": 4, "include": ["l4"]}, "minInstances": 3, "maxInstances": 3},
        _serving_despite_unschedulable,
        pool="l4",
    ),
    State(
        "stale-generation",
        {},
        _stale,
        before=_serving,
        change=patch({"image": NEW_IMAGE}),
        needs_operator_stopped=True,
    ),
    State("not-yet-observed", {}, _exists, needs_operator_stopped=True),
)

BY_FIXTURE = {state.fixture: state for state in STATES}
