"""``Chute -> manifests``: a pure function; the objects are built in ``children.py``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable
from typing import Any

from chute_operator.api import Chute
from chute_operator.children import render_weights, render_workload, workload_objects
from chute_operator.drift import stamped
from chute_operator.workload import RenderOptions, Workload, resolve

__all__ = ["DesiredManifests", "Manifest", "render", "render_weights", "render_workload"]

Manifest = dict[str, Any]


def render(chute: Chute, options: RenderOptions) -> list[Manifest]:
    """Every Kubernetes object the Chute becomes. Raises NoEligibleGpu for an impossible selector."""
    return render_workload(resolve(chute, options))


class DesiredManifests:
    """Each Chute's stamped children, rendered again only when its Workload changes.

    A Chute is reconciled on every event of its Deployment and pods, and building its children
    (with their hash stamps) is most of a reconcile's CPU; the Workload holds everything
    ``children.py`` reads, so an unchanged Workload renders unchanged manifests. Kept per Chute as
    compact JSON (the last Workload only); every call returns fresh objects, so callers may change them.
    """

    def __init__(self) -> None:
        self._by_chute: dict[Hashable, tuple[bytes, str]] = {}
        self.renders = 0
        """How many times the children were actually built (for the tests)."""

    def of(self, chute: Hashable, workload: Workload) -> list[Manifest]:
        """The children of ``workload`` in apply order, each stamped with its hash (drift.stamped)."""
        fingerprint = hashlib.blake2b(repr(workload).encode(), digest_size=16).digest()
        cached = self._by_chute.get(chute)
        if cached is None or cached[0] != fingerprint:
            self.renders += 1
            # not copied first: serialized at once, and every call decodes fresh objects
            text = json.dumps([stamped(m) for m in workload_objects(workload)], separators=(",", ":"))
            cached = self._by_chute[chute] = (fingerprint, text)
        manifests: list[Manifest] = json.loads(cached[1])
        return manifests

    def forget(self, chute: Hashable) -> None:
        self._by_chute.pop(chute, None)
