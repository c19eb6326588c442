"""Why a Chute can run where it can: eligible GPU types, and which nodes could take a replica now.

Pure functions over the Chute, the GPU catalog, the rendered pod template and the cluster's Node
and Pod objects as dicts (no Kubernetes client here): :func:`explain_gpus` and
:func:`explain_nodes`, checked the way the scheduler filters (node affinity and nodeSelector,
taints, allocatable minus what the node's pods request).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chute_operator.api import NodeSelector
from chute_operator.drift import quantity
from chute_operator.gpu_profiles import GFD, GpuProfile
from chute_operator.gpus import GPU_RESOURCES, Catalog, GpuType, check_gpu_names, has_gpus, why_not_eligible

TERMINAL_PHASES = ("Succeeded", "Failed")
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class GpuVerdict:
    """One GPU type of the catalog and whether the Chute's nodeSelector admits it."""

    gpu: GpuType
    reason: str | None
    """Why it is not eligible; None when it is."""

    @property
    def eligible(self) -> bool:
        return self.reason is None


def explain_gpus(selector: NodeSelector, catalog: Catalog, profile: GpuProfile = GFD) -> list[GpuVerdict]:
    """Every catalog GPU type, eligible first, then by VRAM and name; empty for CPU-only Chutes.

    Raises :class:`chute_operator.gpus.NoEligibleGpu` for unknown names, as rendering does.
    """
    if selector.gpu_count == 0:
        return []
    check_gpu_names(selector, catalog)
    verdicts = [GpuVerdict(gpu, why_not_eligible(gpu, selector, profile)) for gpu in catalog.values()]
    return sorted(verdicts, key=lambda v: (not v.eligible, v.gpu.vram_gb, v.gpu.name))


# -- nodes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeVerdict:
    """One node and why it cannot take a replica now (no reasons: it can)."""

    name: str
    gpu_product: str | None
    reasons: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return not self.reasons


Requests = dict[str, Decimal]


def _container_requests(container: Mapping[str, Any]) -> Requests:
    resources = container.get("resources") or {}
    merged = {
        **(resources.get("limits") or {}),
        **(resources.get("requests") or {}),
    }  # requests default to limits
    return {name: value for name, raw in merged.items() if (value := quantity(raw)) is not None}


def _add(total: Requests, more: Requests) -> Requests:
    return {name: total.get(name, Decimal(0)) + more.get(name, Decimal(0)) for name in {*total, *more}}


def pod_requests(pod_spec: Mapping[str, Any]) -> Requests:
    """What the scheduler counts for a pod: its containers and sidecars, or its largest init step."""
    sidecars: Requests = {}
    largest_init: Requests = {}
    for init in pod_spec.get("initContainers") or []:
        requests = _container_requests(init)
        if init.get("restartPolicy") == "Always":
            sidecars = _add(sidecars, requests)
        else:
            step = _add(sidecars, requests)
            largest_init = {
                n: max(largest_init.get(n, Decimal(0)), step.get(n, Decimal(0)))
                for n in {*largest_init, *step}
            }
    running = sidecars
    for container in pod_spec.get("containers") or []:
        running = _add(running, _container_requests(container))
    return {
        n: max(running.get(n, Decimal(0)), largest_init.get(n, Decimal(0))) for n in {*running, *largest_init}
    }


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator, values = (
        expression.get("key", ""),
        expression.get("operator"),
        expression.get("values") or [],
    )
    present, value = key in labels, labels.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and values:
        try:
            number, limit = int(str(value)), int(values[0])
        except ValueError:
            return False
        return number > limit if operator == "Gt" else number < limit
    return False


def _term_failures(term: Mapping[str, Any], node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The expressions of one nodeSelectorTerm that the node fails (fields as ``metadata.name``)."""
    labels = node.get("metadata", {}).get("labels") or {}
    fields = {"metadata.name": node.get("metadata", {}).get("name", "")}
    failed = [e for e in term.get("matchExpressions") or [] if not _expression_matches(e, labels)]
    failed += [e for e in term.get("matchFields") or [] if not _expression_matches(e, fields)]
    return failed


@dataclass(frozen=True)
class Where:
    """What a node's labels are read against: the catalog, the Chute's selector, the GPU profile."""

    catalog: Catalog
    selector: NodeSelector
    profile: GpuProfile = GFD

    def gpu_keys(self) -> set[str]:
        """Every label key the profile names a GPU by."""
        return {k for gpu in self.catalog.values() for m in self.profile.matches(gpu) for k, _ in m}


def _describe_failure(expression: Mapping[str, Any], node: Mapping[str, Any], where: Where) -> str:
    labels = node.get("metadata", {}).get("labels") or {}
    key = expression.get("key", "")
    if key in where.gpu_keys():
        profile = where.profile
        value = labels.get(profile.label)
        found = profile.node_match(labels, where.catalog.values())
        if found is None and value is None:
            gpus = has_gpus((node.get("status") or {}).get("allocatable"))
            return f"{'' if gpus else 'CPU-only: '}no {profile.label} label (GPU profile {profile.name})"
        if found is None:
            return f"{profile.label}={value} is no GPU of the catalog (GPU profile {profile.name})"
        gpu, match = found
        why = why_not_eligible(gpu, where.selector, profile) or "not in the pod's node affinity"
        return f"GPU {gpu.name} ({', '.join(f'{k}={v}' for k, v in match)}) not eligible: {why}"
    values = expression.get("values") or []
    shown = f" {list(values)}" if values else ""
    actual = labels.get(key, node.get("metadata", {}).get("name") if key == "metadata.name" else None)
    has = "no such label" if actual is None else actual
    return f"node affinity: {key} {expression.get('operator')}{shown} (node has {has})"


def _affinity_reasons(pod_spec: Mapping[str, Any], node: Mapping[str, Any], where: Where) -> list[str]:
    labels = node.get("metadata", {}).get("labels") or {}
    reasons = [
        f"nodeSelector {key}={value} (node has {labels.get(key, 'no such label')})"
        for key, value in (pod_spec.get("nodeSelector") or {}).items()
        if labels.get(key) != value
    ]
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        failures = [_term_failures(term, node) for term in terms]
        if all(failures):  # terms are alternatives: one that matches is enough
            described = dict.fromkeys(_describe_failure(e, node, where) for f in failures for e in f)
            reasons += list(described)
    return reasons


def _tolerated(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration.get("key") == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and (toleration.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def _taint_reasons(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> list[str]:
    tolerations = pod_spec.get("tolerations") or []
    reasons = []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in _BLOCKING_EFFECTS and not _tolerated(taint, tolerations):
            value = f"={taint['value']}" if taint.get("value") else ""
            reasons.append(f"taint {taint.get('key')}{value}:{taint.get('effect')} not tolerated")
    return reasons


def show_quantity(resource: str, value: Decimal) -> str:
    """A readable amount: cores for CPU, GiB (or MiB) for bytes, a count otherwise."""
    if resource == "memory" or resource.endswith("storage") or resource.startswith("hugepages-"):
        gib = value / Decimal(2**30)
        return f"{gib.normalize():f}Gi" if gib >= 1 else f"{(value / Decimal(2**20)).normalize():f}Mi"
    return f"{value.normalize():f}"


def _resource_reasons(
    wanted: Requests, node: Mapping[str, Any], pods_on_node: Sequence[Mapping[str, Any]]
) -> list[str]:
    allocatable = {
        name: value
        for name, raw in ((node.get("status") or {}).get("allocatable") or {}).items()
        if (value := quantity(raw)) is not None
    }
    used: Requests = {}
    for pod in pods_on_node:
        used = _add(used, pod_requests(pod.get("spec") or {}))
    reasons = []
    absent = {r for r in GPU_RESOURCES.values() if wanted.get(r, 0) > 0 and not allocatable.get(r)}
    reasons += [f"CPU-only: no {resource} allocatable" for resource in sorted(absent)]
    for name, needed in sorted(wanted.items()):
        if needed <= 0 or name in absent:
            continue
        free = allocatable.get(name, Decimal(0)) - used.get(name, Decimal(0))
        if free < needed:
            total, left = allocatable.get(name, Decimal(0)), max(free, Decimal(0))
            reasons.append(
                f"{name}: needs {show_quantity(name, needed)}, "
                f"{show_quantity(name, left)} free of {show_quantity(name, total)} allocatable"
            )
    if "pods" in allocatable and len(pods_on_node) + 1 > allocatable["pods"]:
        reasons.append(f"pods: {len(pods_on_node)} of {show_quantity('pods', allocatable['pods'])} already")
    return reasons


def _node_state_reasons(node: Mapping[str, Any]) -> list[str]:
    reasons = []
    if (node.get("spec") or {}).get("unschedulable"):
        reasons.append("cordoned (spec.unschedulable)")
    ready = next(
        (c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None
    )
    if ready is None or ready.get("status") != "True":
        reasons.append(f"not Ready ({(ready or {}).get('reason') or 'no Ready condition'})")
    return reasons


def explain_nodes(
    pod_spec: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    catalog: Catalog,
    selector: NodeSelector,
    profile: GpuProfile = GFD,
) -> list[NodeVerdict]:
    """For each node (those that fit first, then by name): the reasons a replica cannot go there now.

    ``pod_spec`` is the rendered Deployment's pod template spec; ``pods`` every pod of the cluster
    (those bound to a node and not finished count against its allocatable); ``profile`` the GPU
    profile it was rendered with (which labels name a node's GPU).
    """
    requests = pod_requests(pod_spec)
    where = Where(catalog, selector, profile)
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            by_node.setdefault(node_name, []).append(pod)
    verdicts = []
    for node in nodes:
        name = node.get("metadata", {}).get("name", "?")
        reasons = [
            *_node_state_reasons(node),
            *_affinity_reasons(pod_spec, node, where),
            *_taint_reasons(pod_spec, node),
            *_resource_reasons(requests, node, by_node.get(name, [])),
        ]
        product = (node.get("metadata", {}).get("labels") or {}).get(profile.label)
        verdicts.append(NodeVerdict(name, product, tuple(dict.fromkeys(reasons))))
    return sorted(verdicts, key=lambda v: (not v.fits, v.name))
