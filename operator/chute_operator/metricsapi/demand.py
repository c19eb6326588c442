"""Which pods a replica's scraper reads. Pure.

Every replica answers the API server (its Service picks one), but only the leader needs every
reading: its scale-to-zero checks read them. A standby reads the pods of the Chutes it was asked
about in the last ``window`` seconds (an HPA asks every 15 s), and a Chute asked about for the first
time is read there and then (:meth:`Scraper.read_now`). Two replicas then read each sidecar about
once per round, not twice, unless the API server asks both about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chute_operator.metricsapi.samples import PodKey, Samples
from chute_shared.cluster import CHUTE_LABEL

ChuteKey = tuple[str, str]
"""(namespace, Chute name)"""


def chute_key(pod: Mapping[str, Any]) -> ChuteKey:
    meta = pod.get("metadata") or {}
    return meta.get("namespace", ""), (meta.get("labels") or {}).get(CHUTE_LABEL, "")


@dataclass
class Demand:
    """The Chutes the API server asked this replica about, and when last."""

    window: float = 120.0
    clock: Callable[[], float] = time.monotonic
    _asked: dict[ChuteKey, float] = field(default_factory=dict)

    def note(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """The API server asked about these pods (their Chutes are read from now on)."""
        now = self.clock()
        for pod in pods:
            key = chute_key(pod)
            if key[1]:
                self._asked[key] = now

    def wanted(self) -> set[ChuteKey]:
        """The Chutes asked about within ``window`` (older ones are forgotten)."""
        now = self.clock()
        for key in [key for key, at in self._asked.items() if now - at > self.window]:
            del self._asked[key]
        return set(self._asked)


def scraped(
    pods: Iterable[Mapping[str, Any]], leader: bool, wanted: set[ChuteKey]
) -> list[Mapping[str, Any]]:
    """All ``pods`` on the leader; on a standby, those of the ``wanted`` Chutes."""
    if leader:
        return list(pods)
    return [pod for pod in pods if chute_key(pod) in wanted]


def to_read_now(
    pods: Iterable[Mapping[str, Any]],
    samples: Samples,
    reasons: Mapping[PodKey, str],
    leader: bool,
    now: float,
    untried: Collection[str] = (),
) -> list[Mapping[str, Any]]:
    """The asked ``pods`` to read before answering: those without a fresh reading; on the leader only
    those no round has tried yet (no ``reasons`` entry: just after a restart; or a reason among
    ``untried``, a skip that may no longer hold: not ready then, ready since), so a sidecar that
    fails its reads is not read again for every question."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        tried = key in reasons and reasons[key] not in untried
        if samples.fresh(key, now) is None and not (leader and tried):
            found.append(pod)
    return found
