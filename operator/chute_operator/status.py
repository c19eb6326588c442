"""The Chute's status, computed purely from what the cluster shows: Deployment and all its pods.

Each condition has its own small rule; Ready is a chain of named checks, the first that fails
gives Ready=False with its reason (as cert-manager does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from chute_operator.api import reasons as r
from chute_operator.api.reasons import OOM_RECENT_SECONDS
from chute_operator.autoscaler import IDLE_AT_ZERO, autoscaler_status, autoscaling_condition
from chute_operator.capabilities import dropped_by_server
from chute_operator.conditions import Observed, find, merge_conditions
from chute_operator.rollout import REPLACE_WAIT_SECONDS, RolloutObservation, lacks_gpus, waiting_since
from chute_operator.sidecars import SIDECAR_UPDATE_ANNOTATION, SidecarChoice
from chute_operator.weights import WeightsState
from chute_operator.workload import Workload
from chute_operator.zero import asleep_since
from chute_shared.cluster import ACTIVATOR_PORT_STATUS, MODEL_CONTAINER

PULL_FAILURES = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
SEVERITY = {
    r.IMAGE_PULL_BACK_OFF: 5,
    r.OOM_KILLED: 4,
    r.CRASH_LOOP_BACK_OFF: 4,
    r.UNSCHEDULABLE: 3,
    r.PROBE_FAILING: 2,
}
"""Pod problems that make a Chute Degraded, most severe first when several pods differ."""


@dataclass(frozen=True)
class PodProblem:
    """Why one pod does not serve."""

    pod: str
    reason: str
    message: str
    serving: bool = False
    """The failure is past: its container serves again (a recent OOM kill), so it is reported only."""


@dataclass(frozen=True)
class Observation:
    """Everything status is computed from."""

    generation: int | None
    selector: str
    workload: Workload | None
    """None when the spec is invalid."""
    invalid_spec: str | None = None
    apply_error: str | None = None
    child_conflict: str | None = None
    """Names the objects in the way that this Chute does not own."""
    deployment: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)
    monitoring_unavailable: bool = False
    """The spec asks for a ServiceMonitor but the cluster has no ServiceMonitor API."""
    unexposed: tuple[str, ...] = ()
    """Kinds spec.expose asks for whose API the cluster does not serve."""
    exposed_problems: tuple[tuple[str, str, str], ...] = ()
    """(kind, reason, message) of each exposed object in the way or refused (ChildConflict, ApplyFailed)."""
    hpa: dict[str, Any] | None = None
    """The Chute's HorizontalPodAutoscaler as last seen (only when it is autoscaled)."""
    rollout: RolloutObservation | None = None
    """What the live Deployment and pods say about a rollout under way (see rollout.observe)."""
    activator_port: int | None = None
    """The Chute's port on the activator (None: it has none, or keeps the one its status names)."""
    template_settled: bool = False
    """The Deployment's pod template is one its controller has observed (see settled.py): while its
    controller has not caught up with a new generation, an unchanged template means a scale."""
    sidecar: SidecarChoice | None = None
    """The sidecar image the pod template has, and the operator's (sidecars.py); None: no condition."""
    weights: WeightsState | None = None
    """The state of the Chute's weights cache (weights.py); None: it has none."""


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


# Pods


def _unschedulable(name: str, status: dict[str, Any]) -> PodProblem | None:
    scheduled = find(status.get("conditions") or [], "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return PodProblem(name, r.UNSCHEDULABLE, scheduled.get("message") or "no node fits the pod")
    return None


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def oom_matters(container: dict[str, Any], now: datetime) -> bool:
    """An OOM kill matters while the container is not ready, or within OOM_RECENT_SECONDS of it.

    A container that was killed, restarted and serves again is not a failure once the window passed.
    """
    current = _get(container, "state", "terminated") or {}
    last = _get(container, "lastState", "terminated") or {}
    kill = current if current.get("reason") == "OOMKilled" else last
    if kill.get("reason") != "OOMKilled":
        return False
    if not container.get("ready"):
        return True
    finished = _time(kill.get("finishedAt"))
    return finished is None or (now - finished).total_seconds() < OOM_RECENT_SECONDS


def _container_problem(name: str, container: dict[str, Any], now: datetime) -> PodProblem | None:
    waiting = _get(container, "state", "waiting") or {}
    last = _get(container, "lastState", "terminated") or {}
    cname, restarts = container.get("name"), container.get("restartCount", 0)
    if waiting.get("reason") in PULL_FAILURES:
        detail = waiting.get("message") or waiting["reason"]
        return PodProblem(name, r.IMAGE_PULL_BACK_OFF, f"container {cname}: {detail}")
    if oom_matters(container, now):
        return PodProblem(
            name,
            r.OOM_KILLED,
            f"container {cname} ran out of memory and was killed ({restarts} restarts)",
            serving=bool(container.get("ready")),
        )
    if waiting.get("reason") == "CrashLoopBackOff":
        code = last.get("exitCode", "?")
        return PodProblem(
            name,
            r.CRASH_LOOP_BACK_OFF,
            f"container {cname} keeps exiting (exit code {code}, {restarts} restarts)",
        )
    return None


def _unready(name: str, status: dict[str, Any]) -> PodProblem | None:
    if status.get("phase") != "Running":
        return None
    ready = find(status.get("conditions") or [], "Ready") or {}
    if ready.get("status") == "True":
        return None
    containers: list[dict[str, Any]] = status.get("containerStatuses") or []
    model = next((c for c in containers if c.get("name") == MODEL_CONTAINER), {})
    if not model.get("started"):
        return PodProblem(name, r.MODEL_LOADING, "the model server is loading")
    return PodProblem(name, r.PROBE_FAILING, "running, but the model does not answer its health check")


def pod_problem(pod: dict[str, Any], now: datetime) -> PodProblem | None:
    """The most telling reason this pod is not serving, or None if it is (or is on its way)."""
    name = _get(pod, "metadata", "name") or "?"
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    found = _unschedulable(name, status)
    for container in statuses:
        found = found or _container_problem(name, container, now)
    return found or _unready(name, status)


class Failure(NamedTuple):
    """The worst pod problem, summarised over every pod."""

    reason: str
    message: str
    serving: bool = False
    """Every pod with this problem serves again: report it, but it does not block Ready."""


def _summarise(problems: list[PodProblem], total: int) -> Failure | None:
    failures = [p for p in problems if p.reason in SEVERITY]
    if not failures:
        return None
    worst = max(failures, key=lambda p: SEVERITY[p.reason])
    count = Counter(p.reason for p in failures)[worst.reason]
    serving = all(p.serving for p in failures if p.reason == worst.reason)
    return Failure(worst.reason, f"{count} of {total} pods: {worst.pod}: {worst.message}", serving)


# What the conditions are decided from


@dataclass(frozen=True)
class Facts:
    """The Deployment's and the pods' state, reduced to what the condition rules read."""

    deployment_exists: bool
    desired: int
    available: int
    ready: int
    updated: int
    rolled_out: bool
    """The Deployment has seen its current spec and no pod of an older template remains
    (with maxUnavailable 0, old pods go only once new ones are available)."""
    stalled: str | None
    """The Deployment's ProgressDeadlineExceeded message, when it has given up."""
    failure: Failure | None
    loading: int
    """Pods whose model server is still loading."""
    asleep: bool = False
    """The operator scaled the Deployment to zero because it was idle (scale to zero, zero.py)."""
    weights: WeightsState | None = None
    """The weights cache's state (None: no cache): the Chute is not Ready until it is."""


def _desired(obs: Observation) -> int:
    desired = _get(obs.deployment, "spec", "replicas")
    if desired is not None:
        return int(desired)
    return obs.workload.replicas if obs.workload and obs.workload.replicas is not None else 1


def _surge_stuck(obs: Observation) -> bool:
    """A rollout waits for a GPU for its surge pod, and the rendered budget will not replace pods."""
    return bool(obs.workload and obs.rollout and obs.rollout.surge_blocked and obs.workload.max_surge > 0)


def _replacing(obs: Observation) -> bool:
    """Pods are replaced one at a time: a new pod may wait for the GPU its predecessor frees."""
    return bool(obs.workload and obs.rollout and obs.rollout.in_progress and obs.workload.max_surge == 0)


def _no_spare_gpu(workload: Workload, rollout: RolloutObservation) -> Failure:
    eligible = ", ".join(workload.eligible_gpus)
    waiting = ", ".join(rollout.gpu_starved)
    return Failure(
        r.NO_SPARE_GPU,
        f"the rollout waits for {workload.gpu_count} free GPU(s) of: {eligible} for its extra pod "
        f"({waiting}); no eligible node has them and the old replica keeps serving. Free a GPU, or set "
        "spec.rollout.strategy: Replace to stop an old replica before its successor starts",
    )


def _waiting_for_a_freed_gpu(obs: Observation, pods: list[dict[str, Any]], now: datetime) -> set[str]:
    """Pods that, while pods are replaced, wait (not too long yet) for the GPU a predecessor frees."""
    if not _replacing(obs):
        return set()
    waiting = set()
    for pod in pods:
        since = waiting_since(pod)
        if lacks_gpus(pod) and since and (now - since).total_seconds() < REPLACE_WAIT_SECONDS:
            waiting.add(str(_get(pod, "metadata", "name")))
    return waiting


def _failure(obs: Observation, problems: list[PodProblem], pods: int) -> Failure | None:
    failure = _summarise(problems, pods)
    if failure and failure.reason == r.UNSCHEDULABLE and obs.workload and obs.rollout and _surge_stuck(obs):
        return _no_spare_gpu(obs.workload, obs.rollout)
    if obs.workload and failure and failure.reason == r.UNSCHEDULABLE:
        eligible = ", ".join(obs.workload.eligible_gpus) or "none (CPU-only)"
        profile = f"; {obs.workload.gpu_profile}" if obs.workload.gpu_count else ""
        return Failure(
            failure.reason,
            f"{failure.message} (needs {obs.workload.gpu_count} GPU(s) of: {eligible}{profile})",
        )
    return failure


SUMMARY_GPUS = 3
"""GPU types named in ``eligibleGpuSummary`` (the wide column) before the rest are counted."""


NO_GPU_SUMMARY = "none"
"""``eligibleGpuSummary`` while the spec is invalid (a GPU Chute with no eligible GPU among them)."""


def gpu_summary(eligible: list[str], invalid: bool = False) -> str:
    """``5: l4, a10, 3090, …``: how many GPU types, the first few (cheapest first); ``0`` for CPU-only;
    ``none`` while the spec is invalid (nothing is eligible, and a GPU Chute reads apart from CPU-only)."""
    if invalid:
        return NO_GPU_SUMMARY
    shown = ", ".join(eligible[:SUMMARY_GPUS]) + (", …" if len(eligible) > SUMMARY_GPUS else "")
    return f"{len(eligible)}: {shown}" if eligible else "0"


def facts_of(obs: Observation, now: datetime) -> Facts:
    """Reduce the observation to the facts every condition rule reads."""
    deployment = obs.deployment or {}
    dstatus = deployment.get("status") or {}
    desired = _desired(obs)
    available = dstatus.get("availableReplicas") or 0
    updated = dstatus.get("updatedReplicas") or 0
    current_generation = obs.template_settled or (dstatus.get("observedGeneration") or 0) >= (
        _get(deployment, "metadata", "generation") or 0
    )
    rolled_out = bool(deployment) and current_generation and updated == (dstatus.get("replicas") or 0)
    progressing = find(dstatus.get("conditions") or [], "Progressing") or {}
    stalled = progressing.get("reason") == "ProgressDeadlineExceeded"
    pods = [p for p in obs.pods if not _get(p, "metadata", "deletionTimestamp")]
    waiting = _waiting_for_a_freed_gpu(obs, pods, now)
    problems = [p for p in (pod_problem(pod, now) for pod in pods) if p and p.pod not in waiting]
    return Facts(
        deployment_exists=bool(deployment),
        desired=desired,
        available=available,
        ready=dstatus.get("readyReplicas") or 0,
        updated=updated,
        rolled_out=rolled_out,
        stalled=progressing.get("message", "") if stalled else None,
        failure=_failure(obs, problems, len(pods)),
        loading=sum(1 for p in problems if p.reason == r.MODEL_LOADING),
        asleep=asleep_since(obs.deployment) is not None,
        weights=obs.weights,
    )


# One rule per condition


def available_condition(facts: Facts) -> Observed:
    """Available: at least one replica is ready to serve."""
    if facts.desired == 0 and facts.asleep:
        return Observed(r.AVAILABLE, "False", r.SCALED_TO_ZERO, IDLE_AT_ZERO)
    if facts.desired == 0:
        return Observed(r.AVAILABLE, "False", r.SCALED_TO_ZERO, "no replicas are requested")
    if facts.available >= 1:
        return Observed(
            r.AVAILABLE,
            "True",
            r.MINIMUM_REPLICAS_AVAILABLE,
            f"{facts.available}/{facts.desired} replicas available",
        )
    if facts.failure:
        return Observed(r.AVAILABLE, "False", facts.failure.reason, facts.failure.message)
    if facts.loading:
        return Observed(r.AVAILABLE, "False", r.MODEL_LOADING, f"{facts.loading} pod(s) loading the model")
    return Observed(r.AVAILABLE, "False", r.NO_REPLICAS_READY, "no replica is ready yet")


def progressing_condition(obs: Observation, facts: Facts) -> Observed:
    """Progressing: the Deployment is being created, rolled out or scaled up."""
    if obs.invalid_spec:
        return Observed(r.PROGRESSING, "False", r.INVALID_SPEC, obs.invalid_spec)
    if facts.weights is not None and facts.weights.working:
        return Observed(r.PROGRESSING, "True", facts.weights.reason, facts.weights.message)
    if not facts.deployment_exists:
        return Observed(r.PROGRESSING, "True", r.CREATING, "creating the Deployment")
    if facts.stalled is not None:
        return Observed(r.PROGRESSING, "False", r.PROGRESS_DEADLINE_EXCEEDED, facts.stalled)
    if facts.failure and facts.failure.reason == r.NO_SPARE_GPU:
        return Observed(r.PROGRESSING, "False", r.NO_SPARE_GPU, facts.failure.message)
    complete = facts.rolled_out and facts.available >= facts.desired
    if complete:
        return Observed(r.PROGRESSING, "False", r.ROLLOUT_COMPLETE, f"{facts.desired} replicas up to date")
    counts = f"{facts.updated}/{facts.desired} replicas updated, {facts.ready} ready"
    if facts.loading:
        limit = f" (allowed {obs.workload.startup_timeout_seconds}s)" if obs.workload else ""
        message = f"{facts.loading} pod(s) loading the model{limit}; {counts}"
        return Observed(r.PROGRESSING, "True", r.MODEL_LOADING, message)
    return Observed(r.PROGRESSING, "True", r.SCALING_UP if facts.rolled_out else r.ROLLING_OUT, counts)


def degraded_condition(obs: Observation, facts: Facts) -> Observed:
    """Degraded: bad input, a refused apply, a failing pod or a stalled rollout."""
    if obs.invalid_spec:
        return Observed(r.DEGRADED, "True", r.INVALID_SPEC, obs.invalid_spec)
    if obs.child_conflict:
        message = "; ".join(m for m in (obs.child_conflict, obs.apply_error) if m)
        return Observed(r.DEGRADED, "True", r.CHILD_CONFLICT, message)
    if obs.apply_error:
        return Observed(r.DEGRADED, "True", r.APPLY_FAILED, obs.apply_error)
    if facts.weights is not None and facts.weights.failed:
        return Observed(r.DEGRADED, "True", facts.weights.reason, facts.weights.message)
    if facts.failure:
        return Observed(r.DEGRADED, "True", facts.failure.reason, facts.failure.message)
    if facts.stalled is not None:
        return Observed(r.DEGRADED, "True", r.PROGRESS_DEADLINE_EXCEEDED, facts.stalled)
    return Observed(r.DEGRADED, "False", r.AS_EXPECTED, "")


class Parts(NamedTuple):
    """The conditions Ready summarises."""

    available: Observed
    progressing: Observed
    degraded: Observed


def _not_ready(cause: Observed) -> Observed:
    return Observed(r.READY, "False", cause.reason, cause.message)


def _no_failure_needs_a_person(parts: Parts, facts: Facts) -> Observed | None:
    """Bad input, a refused apply, a crashing or unpullable pod, a stalled rollout."""
    degraded = parts.degraded
    past = facts.failure is not None and facts.failure.serving and facts.failure.reason == degraded.reason
    needs_a_person = degraded.status == "True" and degraded.reason not in r.SERVING_DESPITE and not past
    return _not_ready(degraded) if needs_a_person else None


def _weights_cached(parts: Parts, facts: Facts) -> Observed | None:
    """The weights cache (when the Chute has one) holds the revision: until then the Deployment keeps
    its pod template, so the Chute does not serve its spec yet."""
    if facts.weights is None or facts.weights.ready:
        return None
    return Observed(r.READY, "False", facts.weights.reason, facts.weights.message)


def _rolled_out(parts: Parts, facts: Facts) -> Observed | None:
    """No pod of an older template remains; a scale-up or a replaced pod is not a rollout."""
    if facts.rolled_out:
        return None
    return _not_ready(parts.degraded if parts.degraded.status == "True" else parts.progressing)


def _serving(parts: Parts, facts: Facts) -> Observed | None:
    """At least one replica serves, unless none is asked for."""
    if parts.available.status == "True" or parts.available.reason == r.SCALED_TO_ZERO:
        return None
    return _not_ready(parts.available)


ReadyCheck = Callable[[Parts, Facts], "Observed | None"]
READY_CHECKS: tuple[ReadyCheck, ...] = (_no_failure_needs_a_person, _weights_cached, _rolled_out, _serving)
"""Ready is True when every check passes; otherwise the first failing check gives its reason."""


def ready_condition(parts: Parts, facts: Facts) -> Observed:
    """Ready: the Chute serves its current spec."""
    for check in READY_CHECKS:
        blocked = check(parts, facts)
        if blocked is not None:
            return blocked
    if parts.available.reason == r.SCALED_TO_ZERO:
        return Observed(r.READY, "True", r.SCALED_TO_ZERO, parts.available.message)
    return Observed(r.READY, "True", r.SERVING, f"{facts.ready}/{facts.desired} replicas ready")


def stalled_condition(ready: Observed, degraded: Observed) -> Observed:
    """Stalled (kstatus): not Ready, and it will not get there without a person (Degraded says why).

    A Chute that is Ready despite a Degraded reason (``SERVING_DESPITE``) is not stalled.
    """
    if degraded.status == "True" and ready.status != "True":
        return Observed(r.STALLED, "True", degraded.reason, degraded.message)
    return Observed(r.STALLED, "False", r.AS_EXPECTED, "")


def reconciling_condition(ready: Observed, stalled: Observed) -> Observed:
    """Reconciling (kstatus): not Ready yet, and getting there on its own (never with Stalled)."""
    if ready.status != "True" and stalled.status != "True":
        return Observed(r.RECONCILING, "True", ready.reason, ready.message)
    return Observed(r.RECONCILING, "False", r.RECONCILED, "")


def monitored_condition(obs: Observation) -> Observed | None:
    """Monitored: present only when the spec asks for a ServiceMonitor."""
    if not (obs.workload and obs.workload.service_monitor):
        return None
    if obs.monitoring_unavailable:
        return Observed(
            r.MONITORED,
            "False",
            r.MONITORING_UNAVAILABLE,
            "the ServiceMonitor API (prometheus-operator) is not installed; the Chute runs "
            "without one and gets it once the API appears",
        )
    return Observed(r.MONITORED, "True", r.SERVICE_MONITOR_APPLIED, "")


def exposed_condition(obs: Observation) -> Observed | None:
    """Exposed: present only when spec.expose asks for an object; a missing API is not a failure."""
    kinds = exposed_kinds(obs.workload)
    if not kinds:
        return None
    if obs.unexposed:
        missing = ", ".join(obs.unexposed)
        return Observed(
            r.EXPOSED,
            "False",
            r.API_UNAVAILABLE[obs.unexposed[0]],
            f"the cluster serves no {missing} API: the Chute serves without "
            f"{'it' if len(obs.unexposed) == 1 else 'them'} and gets "
            f"{'it' if len(obs.unexposed) == 1 else 'them'} once the API appears",
        )
    if obs.exposed_problems:
        return Observed(
            r.EXPOSED, "False", obs.exposed_problems[0][1], "; ".join(m for _, _, m in obs.exposed_problems)
        )
    return Observed(r.EXPOSED, "True", r.EXPOSE_APPLIED, ", ".join(kinds))


def exposed_kinds(workload: Workload | None) -> tuple[str, ...]:
    """The kinds spec.expose renders."""
    if workload is None:
        return ()
    asked = {
        "InferencePool": workload.inference_pool,
        "HTTPRoute": workload.http_route,
        "Ingress": workload.ingress,
    }
    return tuple(kind for kind, spec in asked.items() if spec is not None)


def status_url(obs: Observation) -> str | None:
    """The first external address whose object is the Chute's (its API served, not in the way, not
    refused), else the Service's."""
    if obs.workload is None:
        return obs.previous.get("url")
    absent = {*obs.unexposed, *(kind for kind, _, _ in obs.exposed_problems)}
    external = (url for kind, url in obs.workload.external_urls if kind not in absent)
    return next(external, obs.workload.url)


def sidecar_condition(obs: Observation) -> Observed | None:
    """SidecarCurrent: whether the pods run the operator's sidecar (for a valid spec)."""
    choice = obs.sidecar
    if obs.workload is None or choice is None:
        return None
    if choice.stalled:
        return Observed(
            r.SIDECAR_CURRENT, "False", r.SIDECAR_ROLL_STALLED,
            f"the roll to sidecar {choice.current} passed its progress deadline (its new pods are not "
            f'Ready); annotate the Chute {SIDECAR_UPDATE_ANNOTATION}="false" to return to the sidecar '
            "its pods run",
        )  # fmt: skip
    if choice.rolling:
        why = f"rolling to sidecar {choice.current}; some pods still run an older one"
        return Observed(r.SIDECAR_CURRENT, "False", r.SIDECAR_ROLLING, why)
    if not choice.behind:
        return Observed(r.SIDECAR_CURRENT, "True", r.SIDECAR_UP_TO_DATE, f"sidecar {choice.current}")
    behind = f"the pods keep sidecar {choice.image}; the operator's is {choice.current}"
    if choice.queued:
        why = "its update is asked for and waits its turn (sidecar max concurrent updates)"
    else:
        why = (
            f'kept until asked: annotate the Chute {SIDECAR_UPDATE_ANNOTATION}="true", or set the '
            "operator's sidecar update policy to Automatic"
        )
    return Observed(r.SIDECAR_CURRENT, "False", r.SIDECAR_BEHIND, f"{behind}; {why}")


def weights_condition(obs: Observation) -> Observed | None:
    """Weights: present only when the Chute has a weights cache (spec.model.cache)."""
    if obs.weights is None:
        return None
    return Observed(r.WEIGHTS, obs.weights.status, obs.weights.reason, obs.weights.message)


def supported_condition(obs: Observation) -> Observed | None:
    """Supported: present only when the spec asks for something the API server cannot honour (known
    at start, or seen dropped from the live HPA)."""
    if obs.workload is None:
        return None
    dropped = dropped_by_server(obs.workload.scale_up_tolerance, obs.hpa) if obs.workload.autoscaled else []
    found = [*obs.workload.unsupported, *dropped]
    if not found:
        return None
    return Observed(r.SUPPORTED, "False", r.FIELD_UNSUPPORTED, "; ".join(found))


def conditions_of(
    obs: Observation, now: datetime, metric_grace_from: datetime | None = None
) -> list[Observed]:
    """Every condition, Ready first. ``metric_grace_from``: autoscaler.metric_grace_left's ``not_before``."""
    facts = facts_of(obs, now)
    parts = Parts(
        available_condition(facts), progressing_condition(obs, facts), degraded_condition(obs, facts)
    )
    ready = ready_condition(parts, facts)
    stalled = stalled_condition(ready, parts.degraded)
    extra = [
        weights_condition(obs),
        monitored_condition(obs),
        exposed_condition(obs),
        sidecar_condition(obs),
        supported_condition(obs),
    ]
    if obs.workload and obs.workload.autoscaled:
        extra.append(
            autoscaling_condition(
                obs.hpa,
                facts.available,
                asleep=facts.asleep,
                previous=obs.previous.get("conditions") or [],
                now=now,
                not_before=metric_grace_from,
            )
        )
    return [ready, *parts, reconciling_condition(ready, stalled), stalled, *(c for c in extra if c)]


def compute_status(
    obs: Observation, now: datetime, metric_grace_from: datetime | None = None
) -> dict[str, Any]:
    """The full status object (camelCase) to write to the Chute's /status (``metric_grace_from``:
    :func:`conditions_of`)."""
    deployment_status = (obs.deployment or {}).get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": merge_conditions(
            obs.previous.get("conditions") or [],
            conditions_of(obs, now, metric_grace_from),
            obs.generation,
            now,
        ),
        "replicas": deployment_status.get("replicas") or 0,
        "readyReplicas": deployment_status.get("readyReplicas") or 0,
        "selector": obs.selector,
        "eligibleGpus": obs.workload.eligible_gpus if obs.workload else [],
    }
    status["eligibleGpuSummary"] = gpu_summary(status["eligibleGpus"], invalid=obs.workload is None)
    url = status_url(obs)
    if url:
        status["url"] = url
    load = load_seconds(obs.pods, obs.previous.get("loadSeconds"))
    if load is not None:
        status["loadSeconds"] = load
    port = activator_port(obs)
    if port is not None or ACTIVATOR_PORT_STATUS in obs.previous:
        status[ACTIVATOR_PORT_STATUS] = port  # None removes it (a merge patch)
    autoscaler = autoscaler_status(obs.hpa) if obs.workload and obs.workload.autoscaled else None
    if autoscaler:
        status["autoscaler"] = autoscaler
    return status


def activator_port(obs: Observation) -> int | None:
    """``status.activatorPort``: the Chute's port on the activator; an invalid spec keeps the one it had."""
    if obs.activator_port is not None:
        return obs.activator_port
    previous = obs.previous.get(ACTIVATOR_PORT_STATUS)
    return previous if obs.workload is None and isinstance(previous, int) else None


def load_seconds(pods: list[dict[str, Any]], previous: Any = None) -> int | None:
    """How long the Chute's model took to load, in whole seconds: on the ready pod that became Ready
    last, from its model container's start (``state.running.startedAt``) to its Ready condition's
    ``lastTransitionTime``. With no such pod (at zero, or loading) the previous value stays."""
    latest: tuple[datetime, int] | None = None
    for pod in pods:
        if _get(pod, "metadata", "deletionTimestamp"):
            continue
        ready = find(_get(pod, "status", "conditions") or [], "Ready") or {}
        containers: list[dict[str, Any]] = _get(pod, "status", "containerStatuses") or []
        model = next((c for c in containers if c.get("name") == MODEL_CONTAINER), {})
        started = _time(_get(model, "state", "running", "startedAt") or "")
        became_ready = _time(ready.get("lastTransitionTime") or "")
        if ready.get("status") != "True" or started is None or became_ready is None:
            continue
        seconds = round((became_ready - started).total_seconds())
        if seconds >= 0 and (latest is None or became_ready > latest[0]):
            latest = (became_ready, seconds)
    if latest is not None:
        return latest[1]
    return previous if isinstance(previous, int) and not isinstance(previous, bool) else None


def status_changed(previous: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing ``new`` would change anything."""
    return {k: v for k, v in previous.items() if v is not None} != new
