"""The Chute status condition type and reasons the activator reads (the operator writes them)."""

from __future__ import annotations

DEGRADED = "Degraded"
"""The condition type whose reason says whether a woken Chute can serve."""

UNSCHEDULABLE = "Unschedulable"
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
INVALID_SPEC = "InvalidSpec"
APPLY_FAILED = "ApplyFailed"
CHILD_CONFLICT = "ChildConflict"
