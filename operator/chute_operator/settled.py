"""Memory of each Deployment's pod template as of the last generation its controller observed.

A scale (``kubectl scale``, the HPA, the operator's own replicas) bumps a Deployment's generation as a
new template does, and until the Deployment controller looks, its status cannot tell the two apart.
The template it last settled on can: unchanged means a scale, which is not a rollout.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def template_digest(deployment: dict[str, Any]) -> str:
    """A digest of the Deployment's pod template."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return hashlib.blake2b(json.dumps(template, sort_keys=True).encode(), digest_size=16).hexdigest()


class SettledTemplates:
    """Per Deployment uid, the digest of the pod template its controller last observed."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}

    def settled(self, deployment: dict[str, Any]) -> bool:
        """Whether the Deployment's template is one its controller has observed (remembering it if so)."""
        metadata = deployment.get("metadata") or {}
        uid = str(metadata.get("uid", ""))
        digest = template_digest(deployment)
        observed = (deployment.get("status") or {}).get("observedGeneration") or 0
        if observed >= (metadata.get("generation") or 0):
            self._digests[uid] = digest
            return True
        return self._digests.get(uid) == digest

    def forget(self, uid: str) -> None:
        self._digests.pop(uid, None)
