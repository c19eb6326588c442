"""kwok Stages: how simulated nodes and pods move through their lives, failures included.

kwok's own defaults (node initialize, heartbeat with lease, pod ready, Job pod complete, pod
delete) plus failure simulation chosen per pod by annotations:

``sim.chutes.ai/behavior``
    ``ImagePullBackOff`` (Pending, container waiting ImagePullBackOff), ``CrashLoopBackOff``
    (Running, waiting CrashLoopBackOff, last state terminated ``Error`` exit 1, restart count
    rising), ``OOMKilled`` (likewise with ``OOMKilled`` exit 137), ``ProbeFailing`` (Running,
    containers not ready). Other values: the pod behaves normally.
``sim.chutes.ai/ready-after``
    seconds (``"30"`` or ``"30s"``): the pod runs at once but turns Ready only that long after
    its start, like a slow model load.
``sim.chutes.ai/container``
    the container a ``behavior`` hits (default: every regular container); the others run.

Every status template renders the whole pod status; ``MODE`` picks which one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

BEHAVIOR_ANNOTATION = "sim.chutes.ai/behavior"
READY_AFTER_ANNOTATION = "sim.chutes.ai/ready-after"
CONTAINER_ANNOTATION = "sim.chutes.ai/container"

IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
OOM_KILLED = "OOMKilled"
PROBE_FAILING = "ProbeFailing"
BEHAVIORS = (IMAGE_PULL_BACK_OFF, CRASH_LOOP_BACK_OFF, OOM_KILLED, PROBE_FAILING)
PROBE_FAILURE_MESSAGE = "Readiness probe failed: HTTP probe failed with statuscode: 503"

_NOT_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_NOT_READY = {
    "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
    "operator": "NotIn",
    "values": ["True"],
}
_BEHAVIOR_KEY = f'.metadata.annotations["{BEHAVIOR_ANNOTATION}"]'
_NO_FAILURE = {"key": _BEHAVIOR_KEY, "operator": "NotIn", "values": list(BEHAVIORS)}
_NO_CONTAINER_STATUS_YET = {"key": ".status.containerStatuses", "operator": "DoesNotExist"}


def _phase(*phases: str) -> dict[str, Any]:
    return {"key": ".status.phase", "operator": "In", "values": list(phases)}


def _behavior(*values: str) -> dict[str, Any]:
    return {"key": _BEHAVIOR_KEY, "operator": "In", "values": list(values)}


def _ready_after(operator: str) -> dict[str, Any]:
    return {"key": f'.metadata.annotations["{READY_AFTER_ANNOTATION}"]', "operator": operator}


# The pod status, rendered by kwok's Go templates (with sprig) from the pod as ``.``.
POD_STATUS_TEMPLATE = """\
{{ $now := Now }}
{{ $root := . }}
{{ $mode := "MODE" }}
{{ $annotations := or .metadata.annotations dict }}
{{ $behavior := or ( index $annotations "BEHAVIOR_ANNOTATION" ) "" }}
{{ $target := or ( index $annotations "CONTAINER_ANNOTATION" ) "" }}
{{ $restarts := 0 }}
{{ range ( or .status.containerStatuses list ) }}
{{ if gt ( int .restartCount ) $restarts }}{{ $restarts = int .restartCount }}{{ end }}
{{ end }}
{{ if eq $mode "crash" }}{{ $restarts = add $restarts 1 }}{{ end }}
{{ $backoff := "5m0s" }}
{{ if lt $restarts 6 }}{{ $backoff = index ( list "10s" "10s" "20s" "40s" "1m20s" "2m40s" ) $restarts }}{{ end }}
{{ $unready := list }}
containerStatuses:
{{ range .spec.containers }}
{{ $hit := or ( eq $mode "starting" ) ( eq $target "" ) ( eq $target .name ) }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
{{ if and $hit ( eq $mode "image-pull" ) }}
{{ $unready = append $unready .name }}
  ready: false
  started: false
  restartCount: 0
  state:
    waiting:
      reason: ImagePullBackOff
      message: {{ printf "Back-off pulling image %q: ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image %q: failed to resolve reference %q: not found" .image .image .image | Quote }}
{{ else if and $hit ( eq $mode "crash" ) }}
{{ $unready = append $unready .name }}
  ready: false
  started: false
  restartCount: {{ $restarts }}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{ printf "back-off %s restarting failed container=%s pod=%s_%s(%s)" $backoff .name $root.metadata.name $root.metadata.namespace $root.metadata.uid | Quote }}
  lastState:
    terminated:
{{ if eq $behavior "OOM_KILLED" }}
      exitCode: 137
      reason: OOMKilled
{{ else }}
      exitCode: 1
      reason: Error
{{ end }}
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ else if and $hit ( or ( eq $mode "probe-failing" ) ( eq $mode "starting" ) ) }}
{{ $unready = append $unready .name }}
  ready: false
  started: {{ if and ( eq $mode "starting" ) .startupProbe }}false{{ else }}true{{ end }}
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ else }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  restartCount: 0
{{ if eq ( or .restartPolicy "" ) "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ else }}
  started: false
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
{{ end }}
conditions:
- type: PodReadyToStartContainers
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ if $unready }}
- type: ContainersReady
  status: "False"
  reason: ContainersNotReady
  message: {{ printf "containers with unready status: [%s]" ( join " " $unready ) | Quote }}
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: ContainersNotReady
  message: {{ printf "containers with unready status: [%s]" ( join " " $unready ) | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ else }}
- type: ContainersReady
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ range .spec.readinessGates }}
- type: {{ .conditionType | Quote }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
{{ end }}
{{ if not .status.hostIP }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ end }}
{{ if not .status.podIP }}
{{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ end }}
{{ if not .status.startTime }}
startTime: {{ $now | Quote }}
{{ end }}
phase: {{ if eq $mode "image-pull" }}Pending{{ else }}Running{{ end }}
"""  # noqa: E501

NODE_STATUS_TEMPLATE = """\
{{ $now := Now }}
{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $lastTransitionTime | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
{{ with NodeIP }}
- address: {{ . | Quote }}
  type: InternalIP
{{ end }}
- address: {{ .metadata.name | Quote }}
  type: Hostname
{{ with NodePort }}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ . }}
{{ end }}
"""

NODE_INITIALIZE_EXTRA = """\
allocatable:
{{ with .status.allocatable }}
{{ YAML . 1 }}
{{ else }}
  cpu: 1k
  memory: 1Ti
  pods: 1M
{{ end }}
capacity:
{{ with .status.capacity }}
{{ YAML . 1 }}
{{ else }}
  cpu: 1k
  memory: 1Ti
  pods: 1M
{{ end }}
{{ $kwokVersion := printf "kwok-%s" Version }}
nodeInfo:
  architecture: amd64
  bootID: ""
  containerRuntimeVersion: "containerd://2.1.4"
  kernelVersion: "6.8.0-kwok"
  kubeProxyVersion: {{ $kwokVersion | Quote }}
  kubeletVersion: {{ $kwokVersion | Quote }}
  machineID: ""
  operatingSystem: linux
  osImage: "Simulated by kwok"
  systemUUID: ""
phase: Running
"""

# Seconds after the container started (or the pod was created) at which the pod turns Ready.
READY_AT_JQ = (
    f"((.status.startTime // .metadata.creationTimestamp) | fromdate) + "
    f'(.metadata.annotations["{READY_AFTER_ANNOTATION}"] | tostring | rtrimstr("s") | tonumber) | todate'
)
# Crash loops restart after the kubelet's back-off: 10s, 20s, 40s ... at most 5 minutes.
CRASH_RESTART_DELAY_JQ = (
    'if .status.phase != "Running" then "0s" else '
    "([.status.containerStatuses[]?.restartCount] | max // 1) as $n "
    '| [10 * pow(2; $n - 1), 300] | min | floor | tostring + "s" end'
)


def _pod_status(mode: str) -> str:
    return (
        POD_STATUS_TEMPLATE.replace("MODE", mode)
        .replace("BEHAVIOR_ANNOTATION", BEHAVIOR_ANNOTATION)
        .replace("CONTAINER_ANNOTATION", CONTAINER_ANNOTATION)
        .replace("OOM_KILLED", OOM_KILLED)
    )


def _stage(
    name: str,
    kind: str,
    expressions: list[dict[str, Any]],
    next_: dict[str, Any],
    delay: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": expressions},
        "next": next_,
    }
    if delay:
        spec["delay"] = delay
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def _event(kind: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "reason": reason, "message": message}


def stage_documents() -> list[dict[str, Any]]:
    """Every Stage the simulated cluster runs."""
    ready_status = {"key": '.status.conditions.[] | select( .type == "Ready" ) | .status'}
    return [
        _stage(
            "node-initialize",
            "Node",
            [{**ready_status, "operator": "NotIn", "values": ["True"]}],
            {"statusTemplate": NODE_STATUS_TEMPLATE + NODE_INITIALIZE_EXTRA},
        ),
        _stage(
            "node-heartbeat-with-lease",
            "Node",
            [_phase("Running"), {**ready_status, "operator": "In", "values": ["True"]}],
            {"statusTemplate": NODE_STATUS_TEMPLATE},
            delay={"durationMilliseconds": 600000, "jitterDurationMilliseconds": 610000},
        ),
        _stage(
            "pod-ready",
            "Pod",
            [_NOT_DELETED, _phase("Pending"), _NOT_READY, _NO_FAILURE, _ready_after("DoesNotExist")],
            {"statusTemplate": _pod_status("ready")},
        ),
        _stage(
            "sim-pod-starting",
            "Pod",
            [_NOT_DELETED, _phase("Pending"), _NOT_READY, _NO_FAILURE, _ready_after("Exists")],
            {"statusTemplate": _pod_status("starting")},
        ),
        _stage(
            "sim-pod-ready-after",
            "Pod",
            [_NOT_DELETED, _phase("Running"), _NOT_READY, _NO_FAILURE, _ready_after("Exists")],
            {"statusTemplate": _pod_status("ready")},
            delay={"durationMilliseconds": 0, "durationFrom": {"jq": {"expression": READY_AT_JQ}}},
        ),
        _stage(
            "sim-image-pull-back-off",
            "Pod",
            [_NOT_DELETED, _phase("Pending"), _behavior(IMAGE_PULL_BACK_OFF), _NO_CONTAINER_STATUS_YET],
            {
                "statusTemplate": _pod_status("image-pull"),
                "event": _event("Warning", "Failed", "Error: ImagePullBackOff"),
            },
        ),
        _stage(
            "sim-crash-loop",
            "Pod",
            [_NOT_DELETED, _phase("Pending", "Running"), _behavior(CRASH_LOOP_BACK_OFF, OOM_KILLED)],
            {
                "statusTemplate": _pod_status("crash"),
                "event": _event("Warning", "BackOff", "Back-off restarting failed container"),
            },
            delay={
                "durationMilliseconds": 10000,
                "durationFrom": {"jq": {"expression": CRASH_RESTART_DELAY_JQ}},
            },
        ),
        _stage(
            "sim-probe-failing",
            "Pod",
            [_NOT_DELETED, _phase("Pending"), _behavior(PROBE_FAILING), _NO_CONTAINER_STATUS_YET],
            {
                "statusTemplate": _pod_status("probe-failing"),
                "event": _event("Warning", "Unhealthy", PROBE_FAILURE_MESSAGE),
            },
        ),
        _stage(
            "pod-complete",
            "Pod",
            [
                _NOT_DELETED,
                _phase("Running"),
                {**ready_status, "operator": "In", "values": ["True"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": JOB_COMPLETE_TEMPLATE},
        ),
        _stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"delete": True},
        ),
    ]


JOB_COMPLETE_TEMPLATE = """\
{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Succeeded
"""


def write_stages(path: Path) -> Path:
    """Write the Stages as one multi-document YAML file for ``kwok --config``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(stage_documents(), sort_keys=False, width=1000))
    return path
