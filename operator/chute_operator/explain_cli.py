"""``chute-operator explain -f FILE [--kubeconfig PATH | --cluster]``: where a Chute can run, and why not.

Offline: which GPU types of the catalog are eligible and why each other is not, and what a replica
requires of a node under a GPU profile (``--gpu-profile``, GFD's by default). With a kubeconfig
(``--kubeconfig PATH``, or ``--cluster`` for the current one): which nodes could take a replica
now and why the rest cannot (the profile picked from its nodes unless named). Bad input gets the
same errors as ``render``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from chute_operator.api import Chute
from chute_operator.explain import GpuVerdict, NodeVerdict, explain_gpus, explain_nodes
from chute_operator.gpu_profile_pick import ProfilePick, named_pick, pick_profile
from chute_operator.gpu_profiles import AUTO, GFD, GpuProfile, load_profiles
from chute_operator.gpus import GPU_RESOURCES, Catalog, NoEligibleGpu, has_gpus, load_catalog
from chute_operator.render import render
from chute_operator.render_cli import offline_profile, read_documents
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.workload import RenderOptions

ClusterObjects = tuple[list[dict[str, Any]], list[dict[str, Any]], str]
"""Nodes, pods and the API server's address."""


def _selector_summary(chute: Chute) -> str:
    selector = chute.spec.node_selector
    if selector.gpu_count == 0:
        return "CPU-only (gpuCount 0): no GPU needed"
    return (
        f"{selector.gpu_count} GPU(s) per replica, minVramGbPerGpu {selector.min_vram_gb_per_gpu}, "
        f"include {', '.join(selector.include) if selector.include else 'all'}, "
        f"exclude {', '.join(selector.exclude) if selector.exclude else 'none'}"
    )


def format_gpus(verdicts: list[GpuVerdict], profile: GpuProfile = GFD, gpu_count: int = 0) -> list[str]:
    """Every GPU type: eligible with its node labels under ``profile`` (those of nodes with at least
    ``gpu_count`` of it), or why not."""
    eligible = [v for v in verdicts if v.eligible]
    lines = [f"GPU types: {len(eligible)} of {len(verdicts)} eligible"]
    width = max((len(v.gpu.name) for v in verdicts), default=0)
    for verdict in verdicts:
        gpu = verdict.gpu
        labels = [",".join(f"{k}={v}" for k, v in match) for match in profile.matches(gpu, gpu_count)]
        why = ", ".join(labels) if verdict.eligible else verdict.reason
        word = "eligible" if verdict.eligible else "no"
        lines.append(f"  {word:8}  {gpu.name:{width}}  {gpu.vram_gb:>4} GB  {why}")
    return lines


def format_nodes(verdicts: list[NodeVerdict], server: str) -> list[str]:
    fitting = [v.name for v in verdicts if v.fits]
    lines = [
        f"Nodes of {server}: {len(fitting)} of {len(verdicts)} could take a replica now"
        + (f": {', '.join(fitting)}" if fitting else "")
    ]
    width = max((len(v.name) for v in verdicts), default=0)
    for verdict in verdicts:
        gpu = verdict.gpu_product or "-"
        lines.append(f"  {'yes' if verdict.fits else 'no':3}  {verdict.name:{width}}  {gpu}")
        lines += [f"       - {reason}" for reason in verdict.reasons]
    return lines


def _cluster_objects(kubeconfig: str | None) -> ClusterObjects:
    """Every node and every unfinished pod, as dicts (lightkube, imported only when asked)."""
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import Node, Pod

    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    client = Client(config=config, field_manager="chute-operator-explain")
    nodes = [node.to_dict() for node in client.list(Node)]
    pods = [pod.to_dict() for pod in client.list(Pod, namespace="*")]
    selected = config.get()
    return nodes, pods, str(selected.cluster.server) if selected else "the cluster"


def format_requirements(manifests: list[dict[str, Any]], pick: ProfilePick) -> list[str]:
    """What a replica requires of a node under the profile: GPUs, node affinity, tolerations."""
    pod = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    limits = pod["containers"][0].get("resources", {}).get("limits", {})
    gpus = [f"{name}: {count}" for name, count in limits.items() if name in GPU_RESOURCES.values()]
    lines = [f"On {pick.note()}: {', '.join(gpus) or 'no GPU'} per replica"]
    terms = (
        ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for index, term in enumerate(terms):
        shown = " and ".join(
            f"{e['key']} {e['operator']} [{', '.join(e.get('values') or [])}]"
            for e in term.get("matchExpressions") or []
        )
        lines.append(f"  {'node' if index == 0 else 'or'}: {shown}")
    for toleration in pod.get("tolerations") or []:
        value = f"={toleration['value']}" if toleration.get("value") else ""
        lines.append(f"  tolerates: {toleration.get('key')}{value}:{toleration.get('effect', '*')}")
    return lines


def explain_chute(
    chute: Chute, catalog: Catalog, cluster: ClusterObjects | None, pick: ProfilePick | None = None
) -> list[str]:
    """The report for one Chute. Raises NoEligibleGpu (after the GPU table, in its ``report``)."""
    pick = pick or named_pick(GFD)
    lines = [f"Chute {chute.metadata.name}: {_selector_summary(chute)}"]
    verdicts = explain_gpus(chute.spec.node_selector, catalog, pick.profile)
    if verdicts:
        lines += format_gpus(verdicts, pick.profile, chute.spec.node_selector.gpu_count)
    options = RenderOptions(catalog=catalog, gpu_profile=pick.profile)
    try:
        manifests = render(chute, options)
    except NoEligibleGpu as error:
        error.add_note("\n".join(lines))
        raise
    if verdicts:
        lines += format_requirements(manifests, pick)
    if cluster is not None:
        nodes, pods, server = cluster
        pod_spec = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]["spec"]
        selector = chute.spec.node_selector
        lines += format_nodes(explain_nodes(pod_spec, nodes, pods, catalog, selector, pick.profile), server)
    return lines


def _pick(
    name: str | None, catalog: str | None, gpu_catalog: Catalog, objects: ClusterObjects | None
) -> ProfilePick:
    """The named profile; without a name, the cluster's nodes' (auto) or, offline, GFD's."""
    if objects is not None and name in (None, AUTO):
        labels = [(node.get("metadata") or {}).get("labels") or {} for node in objects[0]]
        with_gpus = [
            (node.get("metadata") or {}).get("labels") or {}
            for node in objects[0]
            if has_gpus((node.get("status") or {}).get("allocatable"))
        ]
        return pick_profile(labels, load_profiles(catalog), gpu_catalog.values(), with_gpus)
    return named_pick(offline_profile(name, catalog))


def explain_command(
    source: str,
    catalog: str | None = None,
    kubeconfig: str | None = None,
    cluster: bool = False,
    gpu_profile: str | None = None,
) -> int:
    """Explain every Chute found; exit 1 naming the field and reason when any is invalid or has no GPU."""
    try:
        gpu_catalog = load_catalog(catalog)
        documents = list(read_documents(source))
        if not (kubeconfig or cluster):
            pick = _pick(gpu_profile, catalog, gpu_catalog, None)
    except (OSError, yaml.YAMLError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not documents:
        print(f"error: no Chute found in {source}", file=sys.stderr)
        return 1
    objects: ClusterObjects | None = None
    if kubeconfig or cluster:
        try:
            objects = _cluster_objects(str(Path(kubeconfig).expanduser()) if kubeconfig else None)
        except Exception as error:  # lightkube raises config, HTTP and API errors of many kinds
            print(f"error: cannot list the cluster's nodes and pods: {error}", file=sys.stderr)
            return 1
        try:
            pick = _pick(gpu_profile, catalog, gpu_catalog, objects)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    failed = False
    reports: list[str] = []
    for label, document in documents:
        name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
        try:
            reports += explain_chute(parse_chute(document), gpu_catalog, objects, pick)
        except (InvalidChute, NoEligibleGpu) as error:
            failed = True
            for line in str(error).splitlines():
                print(f"error: {label} (Chute {name}): {line}", file=sys.stderr)
            reports += getattr(error, "__notes__", [])
    if reports:
        print("\n".join(reports))
    return 1 if failed else 0
