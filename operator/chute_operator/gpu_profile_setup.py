"""The GPU profile the operator renders with: the setting's, or (``auto``) picked from the nodes at start.

Lists the cluster's nodes once, in pages (their labels, and whether they offer GPUs, are kept); a list
that fails (no RBAC for nodes) falls back to GFD's profile and says why, as a pick that matched nothing
does. Logged and exported as ``chute_operator_gpu_profile``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from chute_operator.gpu_profile_pick import ProfilePick, named_pick, pick_profile
from chute_operator.gpu_profiles import AUTO, GFD, GpuProfile, profile_named
from chute_operator.gpus import GpuType, has_gpus
from chute_operator.kube import error_message

log = logging.getLogger(__name__)

PAGE = 500
"""Nodes per list page: a large cluster's nodes (their images included) never arrive in one answer."""


@dataclass(frozen=True)
class NodesSeen:
    """Every node's labels, and those of the nodes that offer GPUs."""

    labels: list[dict[str, str]] = field(default_factory=list)
    with_gpus: list[dict[str, str]] = field(default_factory=list)


async def node_labels(client: AsyncClient) -> NodesSeen:
    """Every node's labels, listed ``PAGE`` nodes at a time."""
    seen = NodesSeen()
    async for node in client.list(Node, chunk_size=PAGE):
        labels = dict((node.metadata.labels if node.metadata else None) or {})
        seen.labels.append(labels)
        if has_gpus(node.status.allocatable if node.status else None):
            seen.with_gpus.append(labels)
    return seen


async def choose_profile(
    client: AsyncClient, setting: str, profiles: Mapping[str, GpuProfile], catalog: Iterable[GpuType]
) -> ProfilePick:
    """The setting's profile, or for ``auto`` the nodes' (ValueError for an unknown name)."""
    if setting != AUTO:
        pick = named_pick(profile_named(setting, profiles))
    else:
        try:
            seen = await node_labels(client)
            pick = pick_profile(seen.labels, profiles, catalog, seen.with_gpus)
        except Exception as error:  # lightkube raises API and transport errors of many kinds
            pick = ProfilePick(
                GFD, f"auto: cannot list nodes ({error_message(error)})", matched=False, source="auto"
            )
    (log.info if pick.matched else log.warning)("rendering Chutes with %s", pick.note())
    return pick
