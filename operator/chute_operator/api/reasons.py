"""Condition types and reasons of a Chute's status, and the reasons of its Events.

They are part of the API: scripts, alerts and GitOps tools match on them. Each is a named constant
with the description docs/api.md lists (generated from ``CATALOG``).
"""

from __future__ import annotations

from dataclasses import dataclass

from chute_shared import reasons as shared
from chute_shared import weights


@dataclass(frozen=True)
class Documented:
    """A condition type or reason with where it appears and what it means."""

    name: str
    appears_in: str
    description: str


CONDITION_TYPES: dict[str, Documented] = {}
CATALOG: dict[str, Documented] = {}
"""Every reason, by name, in the order docs/api.md lists them."""


def _type(name: str, description: str) -> str:
    CONDITION_TYPES[name] = Documented(name, "status.conditions[].type", description)
    return name


def _reason(name: str, appears_in: str, description: str) -> str:
    if name in CATALOG:
        raise ValueError(f"reason {name} is declared twice")
    CATALOG[name] = Documented(name, appears_in, description)
    return name


# Condition types
READY = _type(
    "Ready",
    "True when at least one replica serves the current pod template and no failure needs a person. "
    "False during the rollout of a new template, with no replica serving, or for a failure a person "
    "must fix; not for a scale-up or a replaced pod.",
)
AVAILABLE = _type("Available", "True when at least one replica is ready to serve.")
PROGRESSING = _type(
    "Progressing",
    "True while the Deployment is being created, rolled out, or has fewer replicas than it wants.",
)
DEGRADED = _type(
    shared.DEGRADED, "True when something needs attention: a pod failure, an apply error, bad input."
)
MONITORED = _type("Monitored", "Whether the ServiceMonitor the spec asks for exists (only when it asks).")
EXPOSED = _type(
    "Exposed",
    "Whether the objects spec.expose asks for (HTTPRoute, Ingress, InferencePool) exist (only when it "
    "asks). A missing API is not a failure: Ready does not depend on it.",
)
AUTOSCALING = _type(
    "Autoscaling",
    "Whether the HPA reads the utilization metric and can scale (only when minInstances < maxInstances).",
)
RECONCILING = _type(
    "Reconciling",
    "For kstatus (Flux): True while the Chute is on its way to its spec and will get there on its own; "
    "its reason and message are Ready's. Never True together with Stalled.",
)
SIDECAR_CURRENT = _type(
    "SidecarCurrent",
    "Whether the pod template has the operator's sidecar image. False while a running Chute keeps an "
    "older one: an operator upgrade restarts no pod; the sidecar is updated only when asked (the "
    "operator's sidecar update policy, or the annotation chutes.ai/sidecar-update).",
)
SUPPORTED = _type(
    "Supported",
    "Present only when the spec asks for something the API server cannot honour (learned at the "
    "operator's start): False, naming the field and the server's version. The rest of the Chute is "
    "served as asked, and Ready does not depend on it.",
)
STALLED = _type(
    "Stalled",
    "For kstatus (Flux): True when the Chute is not Ready and will not get there without a person; its "
    "reason and message are Degraded's.",
)

# Ready
SERVING = _reason(
    "Serving",
    "Ready=True",
    "At least one replica serves the current pod template; none of an older one remains.",
)
# Available
MINIMUM_REPLICAS_AVAILABLE = _reason(
    "MinimumReplicasAvailable", "Available=True", "At least one replica is ready to serve."
)
SCALED_TO_ZERO = _reason(
    "ScaledToZero",
    "Available=False, Ready=True, Autoscaling=True, Event",
    "No replicas are requested (spec.replicas 0, or an autoscaler at zero): the Chute is as its spec asks. "
    "With minInstances 0, every replica was idle for shutdownAfterSeconds; the next request wakes it.",
)
NO_REPLICAS_READY = _reason(
    "NoReplicasReady", "Available, Ready", "No replica is ready yet and no pod reports a problem."
)
# Progressing
CREATING = _reason("Creating", "Progressing, Ready", "The Deployment does not exist yet.")
MODEL_LOADING = _reason(
    "ModelLoading",
    "Available, Progressing, Ready",
    "A model server is still loading its model (it has health.startupTimeoutSeconds to start).",
)
ROLLING_OUT = _reason(
    "RollingOut",
    "Progressing, Ready",
    "A new pod template is rolling out: pods of the previous one remain (or the Deployment has not "
    "seen the change yet).",
)
SCALING_UP = _reason(
    "ScalingUp",
    "Progressing",
    "The current generation is rolled out and serves; more replicas are on their way (an autoscaler "
    "scaling up, a replaced pod). Ready stays True.",
)
ROLLOUT_COMPLETE = _reason(
    "RolloutComplete",
    "Progressing=False",
    "Every wanted replica runs the current pod template and is available.",
)
PROGRESS_DEADLINE_EXCEEDED = _reason(
    "ProgressDeadlineExceeded",
    "Progressing, Degraded, Ready",
    "The rollout made no progress within the Deployment's progressDeadlineSeconds (startup timeout + 600).",
)
# Degraded
AS_EXPECTED = _reason("AsExpected", "Degraded=False, Stalled=False", "Nothing needs attention.")
NO_SPARE_GPU = _reason(
    "NoSpareGpu",
    "Progressing=False, Degraded, Ready",
    "A rollout waits for a spare GPU for its extra (surge) pod and none of the eligible types is free; "
    "with spec.rollout.strategy Auto this happens only with one replica. Free a GPU, or set "
    "spec.rollout.strategy: Replace.",
)
INVALID_SPEC = _reason(
    shared.INVALID_SPEC,
    "Progressing, Degraded, Ready",
    "The spec passed the CRD schema but cannot be served (e.g. no GPU type in the catalog fits).",
)
APPLY_FAILED = _reason(
    shared.APPLY_FAILED,
    "Degraded, Ready, Exposed=False",
    "The API server refused a child object; the message names it.",
)
CHILD_CONFLICT = _reason(
    shared.CHILD_CONFLICT,
    "Degraded, Ready, Exposed=False",
    "An object with a child's kind and name exists that this Chute does not own (no controller owner "
    "reference to it); it is left untouched and the message names it. Delete or rename it, or rename "
    "the Chute.",
)
IMAGE_PULL_BACK_OFF = _reason(
    shared.IMAGE_PULL_BACK_OFF,
    "Available, Degraded, Ready",
    "An image cannot be pulled (name, tag or pull secret).",
)
OOM_RECENT_SECONDS = 600
"""An OOM kill is reported while the container is not ready, or for this long after the kill."""
OOM_KILLED = _reason(
    "OOMKilled",
    "Available, Degraded, Ready",
    "A container was killed for running out of memory: reported while it is not ready and for "
    f"{OOM_RECENT_SECONDS // 60} minutes after the kill, then let go (at the next reconcile).",
)
CRASH_LOOP_BACK_OFF = _reason(
    shared.CRASH_LOOP_BACK_OFF,
    "Available, Degraded, Ready",
    "A container keeps exiting; the message has its exit code.",
)
UNSCHEDULABLE = _reason(
    shared.UNSCHEDULABLE,
    "Available, Degraded, Ready",
    "No node fits a pod (GPUs, resources, taints); the message lists the eligible GPU types.",
)
PROBE_FAILING = _reason(
    "ProbeFailing",
    "Available, Degraded, Ready",
    "A started model server does not answer its health check.",
)
# Reconciling
RECONCILED = _reason(
    "Reconciled",
    "Reconciling=False",
    "Nothing is under way: the Chute is as its spec asks, or it is Stalled and waits for a person.",
)
# Monitored
SERVICE_MONITOR_APPLIED = _reason("ServiceMonitorApplied", "Monitored=True", "The ServiceMonitor exists.")
MONITORING_UNAVAILABLE = _reason(
    "MonitoringUnavailable",
    "Monitored=False",
    "The cluster has no ServiceMonitor API (prometheus-operator); it is created once the API appears.",
)
# Exposed
EXPOSE_APPLIED = _reason(
    "ExposeApplied",
    "Exposed=True",
    "Every object spec.expose asks for exists (the message names them); status.url is the external "
    "address when one of them has a host name.",
)
GATEWAY_API_UNAVAILABLE = _reason(
    "GatewayApiUnavailable",
    "Exposed=False",
    "The cluster has no HTTPRoute API (the Gateway API CRDs, gateway.networking.k8s.io/v1): the Chute "
    "serves without its route (status.url stays in-cluster) and gets it once the API appears.",
)
INFERENCE_POOL_API_UNAVAILABLE = _reason(
    "InferencePoolApiUnavailable",
    "Exposed=False",
    "The cluster has no InferencePool API (the Gateway API Inference Extension's CRD, "
    "inference.networking.k8s.io/v1): the Chute serves without its pool and gets it once the API appears.",
)
INGRESS_API_UNAVAILABLE = _reason(
    "IngressApiUnavailable",
    "Exposed=False",
    "The cluster serves no networking.k8s.io/v1 Ingress API: the Chute serves without its Ingress and "
    "gets it once the API appears.",
)
API_UNAVAILABLE = {
    "HTTPRoute": GATEWAY_API_UNAVAILABLE,
    "InferencePool": INFERENCE_POOL_API_UNAVAILABLE,
    "Ingress": INGRESS_API_UNAVAILABLE,
}
"""The Exposed=False reason of each exposed kind whose API is missing."""
# Autoscaling
SCALING_ACTIVE = _reason(
    "ScalingActive",
    "Autoscaling=True",
    "The HPA reads chute_utilization_ratio and scales; the message has current and desired replicas and why.",
)
AUTOSCALER_PENDING = _reason(
    "AutoscalerPending",
    "Autoscaling=Unknown",
    "The HPA has not reported yet, or no replica is ready to be measured.",
)
METRIC_UNAVAILABLE = _reason(
    "MetricUnavailable",
    "Autoscaling=False",
    "The HPA has not read chute_utilization_ratio for 60 s (no custom metrics API, or no sidecar "
    "answered); the message quotes the HPA. Replicas stay where they are. A shorter failure (an "
    "operator restart, a slow scrape round) is not reported: the Chute keeps ScalingActive.",
)
SCALING_BLOCKED = _reason(
    "ScalingBlocked",
    "Autoscaling=False",
    "The HPA cannot change the Deployment's replicas (its AbleToScale condition); the message quotes it.",
)
SCALING_DISABLED = _reason(
    "ScalingDisabled",
    "Autoscaling=False",
    "The Deployment was scaled to zero by hand; the HPA does not act until it has a replica again.",
)
# SidecarCurrent
SIDECAR_UP_TO_DATE = _reason(
    "SidecarUpToDate", "SidecarCurrent=True", "The pod template has the operator's sidecar image."
)
SIDECAR_ROLLING = _reason(
    "SidecarRolling",
    "SidecarCurrent=False",
    "The pod template has the operator's sidecar image and the Deployment is replacing the pods that "
    "still run the older one (the message names both).",
)
SIDECAR_ROLL_STALLED = _reason(
    "SidecarRollStalled",
    "SidecarCurrent=False, Event",
    "The roll to the operator's sidecar passed its Deployment's progress deadline (its new pods do not "
    "become Ready): its turn is given back so other Chutes may roll; annotate the Chute "
    'chutes.ai/sidecar-update: "false" to return it to the sidecar its pods run.',
)
SIDECAR_BEHIND = _reason(
    "SidecarBehind",
    "SidecarCurrent=False, Event",
    "The Chute's pods keep an older sidecar image than the operator's (the message names both): kept "
    'until asked for (the annotation chutes.ai/sidecar-update: "true", or the operator\'s sidecar '
    "update policy Automatic), or asked for and waiting its turn (at most the operator's "
    "sidecar max concurrent updates Chutes roll to a new sidecar at once).",
)
# Supported
FIELD_UNSUPPORTED = _reason(
    "FieldUnsupported",
    "Supported=False, Event",
    "The API server does not accept what a spec field needs (e.g. spec.scalingThreshold's exact scale-up, "
    "the HPA's behavior.scaleUp.tolerance, before Kubernetes 1.35): the message names the field, the "
    "server's version and what is served instead. Upgrading the cluster and restarting the operator "
    "clears it.",
)
# Weights (docs/weights.md)
WEIGHTS = _type(
    "Weights",
    "Whether the model revision's shared cache is downloaded (only with spec.model.cache): the Chute is not "
    "Ready until it is.",
)
WEIGHTS_PENDING = _reason(
    "WeightsPending",
    "Weights=Unknown, Ready",
    "The cache's PersistentVolumeClaim or download Job is being created, or the claim is not bound yet.",
)
WEIGHTS_DOWNLOADING = _reason(
    "WeightsDownloading",
    "Weights=False, Ready",
    "The download Job runs; the message gives the bytes done and the total. A revision change keeps the "
    "old revision's pods serving meanwhile.",
)
WEIGHTS_READY = _reason("WeightsReady", "Weights=True", "The revision is in the cache.")
REPOSITORY_NOT_FOUND = _reason(
    weights.REPOSITORY_NOT_FOUND,
    "Weights=False, Degraded, Ready, Event",
    "The hub has no such model repository (404), or hides a private one from this token.",
)
REVISION_NOT_FOUND = _reason(
    weights.REVISION_NOT_FOUND,
    "Weights=False, Degraded, Ready, Event",
    "The repository has no such revision.",
)
GATED_REPO = _reason(
    weights.GATED_REPO,
    "Weights=False, Degraded, Ready, Event",
    "The repository is gated: spec.model.cache.tokenSecretRef must name a token with access (401).",
)
HUB_UNAUTHORIZED = _reason(
    weights.UNAUTHORIZED,
    "Weights=False, Degraded, Ready, Event",
    "The hub refused the token (401 or 403).",
)
DISK_FULL = _reason(
    weights.DISK_FULL,
    "Weights=False, Degraded, Ready, Event",
    "The cache volume filled up before the model was downloaded: raise spec.model.cache.size.",
)
DOWNLOAD_FAILED = _reason(
    weights.DOWNLOAD_FAILED,
    "Weights=False, Degraded, Ready, Event",
    "The download Job failed for another reason (the hub unreachable, its pod evicted) after its retries; "
    "the message is the last error.",
)
WEIGHTS_FAILURES = frozenset(
    {REPOSITORY_NOT_FOUND, REVISION_NOT_FOUND, GATED_REPO, HUB_UNAUTHORIZED, DISK_FULL, DOWNLOAD_FAILED}
)
# Events (a condition that turns True is announced with the condition type as the reason)
WAKING = _reason(
    "Waking",
    "Event",
    "A request waits for a Chute at zero replicas (the activator holds it): the operator scales it to 1.",
)
APPLIED = _reason(
    "Applied",
    "Event",
    "An existing Chute's children were updated (or some created); the message lists their kinds.",
)
PRUNED = _reason("Pruned", "Event", "A child the spec no longer asks for was deleted.")

PROGRESS_REASONS = frozenset(
    {
        CREATING,
        MODEL_LOADING,
        ROLLING_OUT,
        SCALING_UP,
        NO_REPLICAS_READY,
        WEIGHTS_PENDING,
        WEIGHTS_DOWNLOADING,
    }
)
"""Reasons of a Chute on its way up: their events are Normal, not Warning."""
SERVING_DESPITE = frozenset({UNSCHEDULABLE, PROBE_FAILING})
"""Degraded reasons that leave a serving, rolled-out Chute Ready: a scale-up pod waiting for a node,
a probe failing in one pod. Every other Degraded reason needs a person and makes Ready False."""
