"""``auto``: the GPU profile whose labels the cluster's nodes carry, and why (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chute_operator.gpu_profiles import CUSTOM, GFD, GpuProfile
from chute_operator.gpus import GpuType

PREFERENCE = (CUSTOM, "gke", "eks-auto", "eks", "aks", "eks-nodegroup", GFD.name)
"""Ties go to the first: the platform team's own profile, then the labels an autoscaler knows before a
node exists (EKS Auto Mode's before Karpenter's: its nodes carry karpenter.sh/nodepool too), then GPU
Feature Discovery's (a GKE node running GFD carries both)."""


@dataclass(frozen=True)
class ProfilePick:
    """The profile Chutes are rendered with, and why."""

    profile: GpuProfile
    reason: str
    matched: bool = True
    """False: no node matched any profile, and ``profile`` is the fallback (GFD); or a node with GPUs
    carries no label of the picked profile (it cannot place them)."""
    source: str = "setting"
    """``setting`` (named by the operator's setting) or ``auto``."""

    def note(self) -> str:
        """One line for a Chute's Unschedulable message and the explain report."""
        return f"GPU profile {self.profile.name} ({self.reason})"


def _ranked(counts: Mapping[str, int]) -> str | None:
    best = max(counts.values(), default=0)
    if best == 0:
        return None
    return next(name for name in sorted(counts, key=_order) if counts[name] == best)


def _order(name: str) -> int:
    return PREFERENCE.index(name) if name in PREFERENCE else len(PREFERENCE)


def _checked(pick: ProfilePick, gpu_nodes: Sequence[Mapping[str, str]], gpus: list[GpuType]) -> ProfilePick:
    """``pick``, not matched when a node with GPUs carries no label of its profile."""
    unplaced = sum(1 for labels in gpu_nodes if pick.profile.node_gpu(labels, gpus) is None)
    if not unplaced:
        return pick
    reason = (
        f"{pick.reason}; but {unplaced} node(s) with GPUs carry no label of it that names a catalog GPU: "
        "set the operator's GPU profile (or add the GPU to the catalog)"
    )
    return ProfilePick(pick.profile, reason, matched=False, source=pick.source)


def pick_profile(
    nodes: Sequence[Mapping[str, str]],
    profiles: Mapping[str, GpuProfile],
    catalog: Iterable[GpuType],
    gpu_nodes: Sequence[Mapping[str, str]] = (),
) -> ProfilePick:
    """The profile most GPU nodes match (a node counts for a profile whose label names a catalog GPU
    on it, and which is of the profile's platform if it names one); with no GPU node, the platform
    whose label most nodes carry; else GFD, with ``matched`` False. ``gpu_nodes`` (the labels of the
    nodes with GPUs allocatable): any the pick cannot place makes it not ``matched``."""
    gpus = list(catalog)
    counts = {
        name: sum(
            1
            for labels in nodes
            if profile.node_gpu(labels, gpus) is not None and profile.on_platform(labels)
        )
        for name, profile in profiles.items()
    }
    chosen = _ranked(counts)
    if chosen is not None:
        profile = profiles[chosen]
        reason = f"auto: {counts[chosen]} of {len(nodes)} nodes carry its {profile.label}"
        return _checked(ProfilePick(profile, reason, source="auto"), gpu_nodes, gpus)
    platform = {
        name: sum(1 for labels in nodes if profile.on_platform(labels))
        for name, profile in profiles.items()
        if profile.platform_label
    }
    chosen = _ranked(platform)
    if chosen is not None:
        profile = profiles[chosen]
        reason = (
            f"auto: no GPU node yet; {platform[chosen]} of {len(nodes)} nodes carry {profile.platform_label}"
        )
        return _checked(ProfilePick(profile, reason, source="auto"), gpu_nodes, gpus)
    return ProfilePick(
        GFD,
        f"auto: no node of the {len(nodes)} carries the labels of any GPU profile "
        f"({', '.join(profiles)}); set the operator's GPU profile",
        matched=False,
        source="auto",
    )


def named_pick(profile: GpuProfile) -> ProfilePick:
    """The pick of a profile named by the setting."""
    return ProfilePick(profile, "set by CHUTE_OPERATOR_GPU_PROFILE")
