"""Conditions per the Kubernetes API conventions; lastTransitionTime moves only when status flips."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Observed:
    """A condition as computed now, before its transition time is decided."""

    type: str
    status: Status
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    """RFC 3339 with second precision, as metav1.Time serialises."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    """A metav1.Time (or any RFC 3339 time) as an aware datetime (UTC when it names no zone); None
    when missing or malformed."""
    if not text:
        return None
    try:
        found = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def merge_conditions(
    previous: list[dict[str, Any]], observed: list[Observed], generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """The new conditions list: one entry per observed type, in the observed order.

    A condition keeps its previous lastTransitionTime unless its status changed.
    """
    before = {c.get("type"): c for c in previous}
    merged = []
    for condition in observed:
        old = before.get(condition.type) or {}
        flipped = old.get("status") != condition.status or "lastTransitionTime" not in old
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "observedGeneration": generation,
                "lastTransitionTime": timestamp(now) if flipped else old["lastTransitionTime"],
                "reason": condition.reason,
                "message": condition.message,
            }
        )
    return merged


def find(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The condition of this type, if any."""
    return next((c for c in conditions if c.get("type") == kind), None)
