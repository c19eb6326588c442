"""Which sidecar image a Chute's pod template gets: an operator upgrade restarts no GPU pod.

A new Chute gets the operator's sidecar image. A running one (its Deployment exists) whose pods
have another keeps theirs until the platform team asks for the new one: the operator's update
policy ``Automatic``, or the Chute's annotation ``chutes.ai/sidecar-update: "true"`` (``"false"``
keeps it under ``Automatic``); and then at their pace: at most ``max_concurrent_updates`` Chutes
roll to a new sidecar at once, the next only once one of them is rolled out (every replica Ready on
the new sidecar). The Chute's ``SidecarCurrent`` condition says when its sidecar is behind.

Pure: no I/O. The decision (:func:`choose`) is a function of what observe read; the ledger of
updates under way (:class:`SidecarUpdates`) is state the reconciler keeps between reconciles, as it
keeps the activator's ports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from chute_operator.rollout import rollout_in_progress
from chute_operator.store import Key
from chute_shared.cluster import SIDECAR_CONTAINER

SIDECAR_UPDATE_ANNOTATION = "chutes.ai/sidecar-update"
"""On a Chute: ``"true"`` rolls it to the operator's sidecar (at the pace set), ``"false"`` keeps the
one its pods have whatever the policy, and, set while it rolls, gives its slot back and returns it to
the sidecar its pods run. Absent, or a value that is neither: the operator's policy decides."""
_YES = frozenset({"true", "yes", "1", "on"})
_NO = frozenset({"false", "no", "0", "off"})
MANUAL = "Manual"
AUTOMATIC = "Automatic"
SIDECAR_UPDATE_POLICIES = (MANUAL, AUTOMATIC)


@dataclass(frozen=True)
class SidecarPolicy:
    """The operator's sidecar image, and when running Chutes get it."""

    image: str
    update_policy: str = MANUAL
    max_concurrent_updates: int = 1


@dataclass(frozen=True)
class SidecarChoice:
    """The sidecar image a Chute's pod template gets, and why."""

    image: str
    """What the pod template is rendered with."""
    current: str
    """The operator's sidecar image."""
    wanted: bool = False
    """The update is asked for (by the policy or the Chute's annotation)."""
    queued: bool = False
    """Asked for, but ``max_concurrent_updates`` other Chutes are rolling to a new sidecar."""
    rolling: bool = False
    """The pod template has the operator's sidecar, but some pods still run another."""
    stalled: bool = False
    """Rolling, and its Deployment has passed its progress deadline: its slot is given back."""

    @property
    def behind(self) -> bool:
        return self.image != self.current


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _sidecar_in(pod_spec: Any) -> str | None:
    for container in _get(pod_spec, "initContainers") or []:
        if container.get("name") == SIDECAR_CONTAINER:
            image = container.get("image")
            return str(image) if image else None
    return None


def template_sidecar(deployment: Mapping[str, Any] | None) -> str | None:
    """The sidecar image of a Deployment's pod template (None: no Deployment, or no sidecar)."""
    return _sidecar_in(_get(deployment, "spec", "template", "spec"))


def pod_sidecar(pod: Mapping[str, Any]) -> str | None:
    """The sidecar image of a pod's spec."""
    return _sidecar_in(_get(pod, "spec"))


def _running(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pods that run or will: neither terminating nor ended (an evicted pod keeps its old sidecar
    until the pod garbage collector removes it, which may be never)."""
    return [
        pod
        for pod in pods
        if not _get(pod, "metadata", "deletionTimestamp")
        and _get(pod, "status", "phase") not in ("Failed", "Succeeded")
    ]


def update_wanted(chute: Mapping[str, Any], policy: str) -> bool:
    """Whether the platform team asks for this Chute's sidecar to be updated: its annotation, where
    set (``true``/``false``, any case), else the operator's policy."""
    said = annotation_says(chute)
    return policy == AUTOMATIC if said is None else said


def annotation_says(chute: Mapping[str, Any]) -> bool | None:
    """The Chute's annotation read as yes (``true``/``yes``/``1``/``on``, any case) or no
    (``false``/``no``/``0``/``off``); None: absent or neither (the policy decides)."""
    value = (_get(chute, "metadata", "annotations") or {}).get(SIDECAR_UPDATE_ANNOTATION)
    word = str(value).strip().lower() if value is not None else ""
    return True if word in _YES else False if word in _NO else None


def stalled(deployment: Mapping[str, Any] | None) -> bool:
    """The Deployment controller gave up waiting for progress (``ProgressDeadlineExceeded``)."""
    for condition in _get(deployment, "status", "conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return condition.get("status") == "False"
    return False


def previous_sidecar(pods: Iterable[Mapping[str, Any]], current: str) -> str | None:
    """The sidecar image most of the running pods have other than ``current`` (None: none has one)."""
    counts: dict[str, int] = {}
    for pod in _running(pods):
        image = pod_sidecar(pod)
        if image is not None and image != current:
            counts[image] = counts.get(image, 0) + 1
    return max(counts, key=lambda image: counts[image]) if counts else None


def choose(current: str, live: str | None, wanted: bool, may_start: bool) -> SidecarChoice:
    """The sidecar for a Chute whose live pod template has ``live`` (None: no Deployment yet):
    the current one for a new Chute or one that has it; else the live one, unless the update is
    ``wanted`` and it ``may_start`` (a slot is free, or this Chute holds one)."""
    if live is None or live == current:
        return SidecarChoice(current, current)
    if wanted and may_start:
        return SidecarChoice(current, current, wanted=True)
    return SidecarChoice(live, current, wanted=wanted, queued=wanted)


def rolled_out_on(deployment: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], image: str) -> bool:
    """The Deployment's controller has finished rolling out its template and every pod that is not
    terminating has sidecar ``image`` (every replica Ready on it)."""
    return not rollout_in_progress(dict(deployment)) and all(
        pod_sidecar(pod) == image for pod in _running(pods)
    )


def _no_wake(key: Key) -> None:
    return None


class SidecarUpdates:
    """The Chutes rolling to the operator's sidecar, at most ``max_concurrent_updates`` at once, and
    those waiting their turn (``wake`` queues one when a slot frees up, oldest first).

    Kept in memory. An operator that starts while a Chute rolls to its sidecar counts that Chute as
    updating once it sees its pods with another sidecar under a template with the current one (it
    may then count more than the limit until they finish); a rollout that replaces its only pod
    (maxSurge 0) shows no such pod and is not counted.
    """

    def __init__(self, policy: SidecarPolicy, wake: Callable[[Key], None] = _no_wake) -> None:
        self.policy = policy
        self.wake = wake
        self._updating: dict[Key, None] = {}
        self._waiting: dict[Key, None] = {}

    @property
    def updating(self) -> tuple[Key, ...]:
        return tuple(self._updating)

    @property
    def waiting(self) -> tuple[Key, ...]:
        return tuple(self._waiting)

    def choose(
        self,
        key: Key,
        chute: Mapping[str, Any],
        deployment: Mapping[str, Any] | None,
        pods: Iterable[Mapping[str, Any]],
    ) -> SidecarChoice:
        """The sidecar for the Chute at ``key``, whose owned Deployment (None: none yet) and pods are
        these; takes a slot when it starts an update (synchronous: no other reconcile runs between
        the check and the taking), gives it back once the update is rolled out."""
        pods = list(pods)
        current = self.policy.image
        live = template_sidecar(deployment)
        if live is None or live == current:
            self._leave_queue(key)
            older = previous_sidecar(pods, current) if live is not None else None
            if older is not None and annotation_says(chute) is False:
                self._release(key)  # given up mid-roll: back to what its pods run
                return choose(current, older, False, False)
            if key in self._updating:
                if deployment is None or rolled_out_on(deployment, pods, current) or stalled(deployment):
                    self._release(key)
            elif older is not None and not stalled(deployment):
                self._updating[key] = None  # an update begun before this operator started
            settled = choose(current, live, False, False)
            if older is None or deployment is None:
                return settled
            return replace(settled, rolling=True, stalled=stalled(deployment))
        wanted = update_wanted(chute, self.policy.update_policy)
        if not wanted:
            self._leave_queue(key)
            self._release(key)
            return choose(current, live, False, False)
        may_start = key in self._updating or len(self._updating) < self.policy.max_concurrent_updates
        if may_start:
            self._waiting.pop(key, None)
            self._updating[key] = None
        else:
            self._waiting[key] = None
        return choose(current, live, True, may_start)

    def forget(self, key: Key) -> None:
        """A Chute deleted."""
        self._leave_queue(key)
        self._release(key)

    def _leave_queue(self, key: Key) -> None:
        if self._waiting.pop(key, False) is None:
            self._wake()

    def _release(self, key: Key) -> None:
        if self._updating.pop(key, False) is None:
            self._wake()

    def _wake(self) -> None:
        """Queue as many waiting Chutes as there are free slots, oldest first (each takes its slot,
        or leaves the queue, when it is reconciled)."""
        free = self.policy.max_concurrent_updates - len(self._updating)
        for key in list(self._waiting)[: max(0, free)]:
            self.wake(key)
