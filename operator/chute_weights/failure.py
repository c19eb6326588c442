"""What a failed download was, as the operator reports it: a reason, the hub's message, and whether
retrying could help."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from chute_shared import weights

MESSAGE_LIMIT = 1000
"""The kubelet keeps at most 4096 bytes of a termination message; the JSON around it is short."""


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    permanent: bool


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes (bounded: a cycle of contexts is possible in principle)."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found and len(found) < 16:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines)[:MESSAGE_LIMIT] or type(error).__name__


def classify(error: BaseException) -> Failure:
    """The reason of a download failure (``chute_shared.weights.FAILURE_REASONS``)."""
    chain = _chain(error)
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain):
        return Failure(weights.DISK_FULL, f"the cache volume is full: {_first_line(error)}", True)
    for cause in chain:
        if isinstance(cause, RevisionNotFoundError):
            return Failure(weights.REVISION_NOT_FOUND, _first_line(cause), True)
        if isinstance(cause, GatedRepoError):
            return Failure(weights.GATED_REPO, _first_line(cause), True)
        if isinstance(cause, RepositoryNotFoundError):
            return Failure(weights.REPOSITORY_NOT_FOUND, _first_line(cause), True)
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(cause, HfHubHTTPError) and status in (401, 403):
            return Failure(weights.UNAUTHORIZED, _first_line(cause), True)
    return Failure(weights.DOWNLOAD_FAILED, _first_line(error), False)
