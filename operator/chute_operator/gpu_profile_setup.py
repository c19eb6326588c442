"""The GPU profile the operator renders with: the setting's, or (``auto``) picked from the nodes at start.

Lists the cluster's nodes once (their labels only matter); a list that fails (no RBAC for nodes) falls
back to GFD's profile and says why, as a pick that matched nothing does. Logged and exported as
``chute_operator_gpu_profile``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from chute_operator.gpu_profile_pick import ProfilePick, named_pick, pick_profile
from chute_operator.gpu_profiles import AUTO, GFD, GpuProfile, profile_named
from chute_operator.gpus import GpuType
from chute_operator.kube import error_message

log = logging.getLogger(__name__)


async def node_labels(client: AsyncClient) -> list[dict[str, str]]:
    """Every node's labels."""
    return [dict((node.metadata.labels if node.metadata else None) or {}) async for node in client.list(Node)]


async def choose_profile(
    client: AsyncClient, setting: str, profiles: Mapping[str, GpuProfile], catalog: Iterable[GpuType]
) -> ProfilePick:
    """The setting's profile, or for ``auto`` the nodes' (ValueError for an unknown name)."""
    if setting != AUTO:
        pick = named_pick(profile_named(setting, profiles))
    else:
        try:
            pick = pick_profile(await node_labels(client), profiles, catalog)
        except Exception as error:  # lightkube raises API and transport errors of many kinds
            pick = ProfilePick(
                GFD, f"auto: cannot list nodes ({error_message(error)})", matched=False, source="auto"
            )
    (log.info if pick.matched else log.warning)("rendering Chutes with %s", pick.note())
    return pick
