"""An in-memory copy of the watched objects, fed by watch events; read by the reconciler."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from chute_shared.cluster import CHUTE_KIND, CHUTE_LABEL

Key = tuple[str, str]
"""(namespace, name)"""


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


SHARED_STRING_LENGTH = 64
"""Strings up to this length are shared (keys, labels, images, reasons); longer ones are rarely equal."""
SHARED_STRINGS = 65536
"""How many distinct strings :class:`SharedStrings` remembers before it starts again (unique ones, a
uid or a resourceVersion, would otherwise pile up)."""


class SharedStrings:
    """One copy of each short string among the stored objects.

    Every watch event is decoded on its own, so each stored object had its own copy of every key
    ("metadata", "app.kubernetes.io/managed-by", ...) and of every label, image and reason: about half
    of a stored Deployment (tests/unit/chute_operator/test_store_strings.py). Bounded: after
    ``capacity`` distinct strings the memo starts again (objects stored meanwhile keep theirs).
    """

    def __init__(self, capacity: int = SHARED_STRINGS) -> None:
        self.capacity = capacity
        self._memo: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._memo)

    def copy(self, value: Any) -> Any:
        """``value`` rebuilt with the remembered copy of each short string (keys and values); ``value``
        itself when it is nested too deep to walk (a Chute's preserve-unknown-fields parts take any
        JSON: one nested 500 deep made the recursive walk raise RecursionError, and the initial
        listing with it, for good)."""
        if len(self._memo) > self.capacity:
            self._memo = {}
        memo = self._memo

        def walk(node: Any) -> Any:
            kind = type(node)
            if kind is dict:
                return {
                    # a long key (any length in those parts) is not remembered, as a long value is not
                    (memo.setdefault(k, k) if type(k) is str and len(k) <= SHARED_STRING_LENGTH else k): (
                        walk(v)
                    )
                    for k, v in node.items()
                }
            if kind is list:
                return [walk(v) for v in node]
            if kind is str and len(node) <= SHARED_STRING_LENGTH:
                return memo.setdefault(node, node)
            return node

        try:
            return walk(value)
        except RecursionError:
            return value  # unshared, as every object was before


class Store:
    """Latest known state of Chutes and their children, by kind."""

    def __init__(self, share_strings: bool = True) -> None:
        self._strings = SharedStrings() if share_strings else None
        self._objects: dict[str, dict[Key, dict[str, Any]]] = defaultdict(dict)
        # kind -> Chute key -> keys of the objects labelled as that Chute's
        self._by_chute: dict[str, dict[Key, set[Key]]] = defaultdict(lambda: defaultdict(set))
        # kind -> key -> (uid, resourceVersion) of the DELETED events since the last listing: a listing
        # taken before one of them must not bring the object back
        self._deleted: dict[str, dict[Key, tuple[str | None, int]]] = defaultdict(dict)

    def put(self, kind: str, obj: dict[str, Any]) -> bool:
        """Remember ``obj`` (without what no reader needs: see :func:`slim`); False, and nothing
        changed, when the store already holds this version of it or a newer one."""
        key = key_of(obj)
        known = self._objects[kind].get(key)
        if known is not None and not _newer(obj, known):
            return False
        obj = slim(kind, obj)
        if self._strings is not None:
            obj = self._strings.copy(obj)
        self._unindex(kind, key, known)
        self._objects[kind][key] = obj
        owner = chute_of(obj)
        if owner:
            self._by_chute[kind][(key[0], owner)].add(key)
        return True

    def remove(self, kind: str, key: Key, uid: str | None = None, version: str | None = None) -> None:
        """Forget the object at ``key``; with ``uid``, only if it is still that object (a late
        DELETED of an object that was deleted and created again must not drop the new one).
        ``version``: the DELETED event's resourceVersion, remembered until a listing newer than it."""
        known = self._objects[kind].get(key)
        known_uid = (known.get("metadata") or {}).get("uid") if known is not None else None
        if version is not None and version.isdigit() and (known is None or uid in (None, known_uid)):
            # also when already forgotten (the operator's own delete): a listing taken before it
            # must not bring it back
            self._deleted[kind][key] = (uid if uid is not None else known_uid, int(version))
        if known is None or (uid is not None and known_uid != uid):
            return
        self._unindex(kind, key, self._objects[kind].pop(key))

    def replace(
        self, kind: str, listed: list[dict[str, Any]], version: str, namespaces: tuple[str, ...] = ()
    ) -> set[Key]:
        """Make the store agree with a fresh listing taken at resourceVersion ``version`` (of
        ``namespaces``, all when empty): what the listing lacks was deleted, unless the watch
        delivered it after the listing was taken. Returns the Chutes whose objects it forgot, added
        or found newer (none when the store already agreed)."""
        fresh = {key_of(obj) for obj in listed}
        changed: set[Key] = set()
        for key, obj in list(self._objects[kind].items()):
            if key in fresh or (namespaces and key[0] not in namespaces):
                continue
            if not _newer_than(obj, version):
                self.remove(kind, key)
                changed.add(_chute_key(kind, key, obj))
        deleted = self._deleted[kind]
        for obj in listed:
            gone = deleted.get(key_of(obj))
            if (
                gone is not None
                and gone[0] == (obj.get("metadata") or {}).get("uid")
                and not (version.isdigit() and gone[1] <= int(version))
            ):
                continue  # the listing was taken before its DELETED event, which the watch delivered
            old = self._objects[kind].get(key_of(obj))
            if self.put(kind, obj):
                changed.update(_chute_key(kind, key_of(obj), o) for o in (old, obj) if o is not None)
        if version.isdigit():
            for key, (_, when) in list(deleted.items()):
                if when <= int(version) and (not namespaces or key[0] in namespaces):
                    del deleted[key]  # this listing is newer: it no longer has it
        return {key for key in changed if key[1]}

    def _unindex(self, kind: str, key: Key, obj: dict[str, Any] | None) -> None:
        owner = chute_of(obj) if obj else None
        if owner:
            keys = self._by_chute[kind].get((key[0], owner))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_chute[kind][(key[0], owner)]

    def get(self, kind: str, key: Key) -> dict[str, Any] | None:
        return self._objects[kind].get(key)

    def keys(self, kind: str) -> list[Key]:
        return list(self._objects[kind])

    def children(self, kind: str, chute: Key) -> list[dict[str, Any]]:
        """Objects of this kind labelled as belonging to the Chute (an index lookup, not a scan)."""
        objects = self._objects[kind]
        return [objects[key] for key in self._by_chute[kind].get(chute, ())]


POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp")
"""What a stored pod keeps of its metadata: its key and version (the store), labels (the Chute index,
the metrics API's label selectors), deletionTimestamp (status, rollout, scale to zero, metrics API),
and below, its Job's owner reference."""
POD_OWNER_REFERENCE = ("kind", "uid")
"""Of its owner references, a pod keeps only its Job's, and of it what tells a weights download Job's
pods (weights.job_pods): a serving pod's ReplicaSet is read by nothing."""
POD_SPEC = ("nodeName",)
"""Of its spec, the node (the metrics API skips pods on simulated nodes), and below, each container's
name and ports only (the metrics API reads the sidecar's metrics port)."""
POD_CONTAINER_SPEC = ("name", "ports")
POD_INIT_CONTAINER_SPEC = ("name", "ports", "image")
"""An init container (the sidecar) keeps its image too: which sidecar a pod runs (sidecars.py)."""
POD_STATUS = ("phase", "podIP", "conditions")
"""Of its status: phase, conditions (Ready, PodScheduled and when it turned: status, rollout, scale to
zero, metrics API), the pod IP (metrics API), and below, each container's state (status)."""
POD_CONTAINER_STATUS = ("name", "ready", "started", "restartCount", "state", "lastState")


def slim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with only what the operator reads of it: the one function every stored object passes,
    as it arrives (a watch event, a page of a listing, an apply's answer). The object itself is not
    changed (a watch event's body is shared); slimming a slimmed object changes nothing.

    - Every kind loses its managedFields, the largest part of most objects, but a Deployment keeps
      of its Apply entries the manager and whether it applied spec.replicas (plan.owns_replicas).
    - A Pod keeps only the fields named in POD_*: its spec (every container's command, env, probes,
      resources, volumes) and its containers' images and ids are read by nothing, but the init
      containers' images (the sidecar's: sidecars.py). The children the
      operator applies keep their spec and metadata whole: drift.drifted compares them with the
      rendered manifests.
    """
    if kind == "Pod":
        return _slim_pod(obj)
    metadata = obj.get("metadata")
    if not metadata or "managedFields" not in metadata:
        return obj
    slimmed = {k: v for k, v in metadata.items() if k != "managedFields"}
    kept = [_replicas_entry(e) for e in metadata["managedFields"] or [] if e.get("operation") == "Apply"]
    if kind == "Deployment" and kept:
        slimmed["managedFields"] = kept
    return {**obj, "metadata": slimmed}


def _replicas_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An Apply entry of managedFields reduced to its manager and whether it holds spec.replicas (its
    fieldsV1 otherwise mirrors the whole applied spec)."""
    spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
    fields: dict[str, Any] = {"f:spec": {"f:replicas": {}}} if "f:replicas" in spec else {}
    return {"manager": entry.get("manager"), "operation": "Apply", "fieldsV1": fields}


def _only(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in fields if k in obj} if isinstance(obj, dict) else {}


def _slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    slim_spec = _only(spec, POD_SPEC)
    slim_status = _only(status, POD_STATUS)
    for field, kept in (("initContainers", POD_INIT_CONTAINER_SPEC), ("containers", POD_CONTAINER_SPEC)):
        if spec.get(field):
            slim_spec[field] = [_only(c, kept) for c in spec[field]]
    for field in ("initContainerStatuses", "containerStatuses"):
        if status.get(field):
            slim_status[field] = [_only(c, POD_CONTAINER_STATUS) for c in status[field]]
    slimmed: dict[str, Any] = {k: pod[k] for k in ("apiVersion", "kind") if k in pod}
    slimmed["metadata"] = _only(pod.get("metadata"), POD_METADATA)
    jobs = [
        _only(ref, POD_OWNER_REFERENCE)
        for ref in (pod.get("metadata") or {}).get("ownerReferences") or []
        if isinstance(ref, dict) and ref.get("kind") == "Job"
    ]
    if jobs:
        slimmed["metadata"]["ownerReferences"] = jobs
    slimmed["spec"] = slim_spec
    slimmed["status"] = slim_status
    return slimmed


def chute_of(obj: dict[str, Any]) -> str | None:
    """The Chute an object is labelled as belonging to."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(CHUTE_LABEL)


def _chute_key(kind: str, key: Key, obj: dict[str, Any]) -> Key:
    """The Chute an object concerns: itself, or the one it is labelled as belonging to (name empty:
    none)."""
    return key if kind == CHUTE_KIND else (key[0], chute_of(obj) or "")


def _version(obj: dict[str, Any]) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion", ""))
    except ValueError:
        return None


def _newer_than(obj: dict[str, Any], version: str) -> bool:
    """Whether ``obj`` changed after the collection version ``version`` (False when unknowable)."""
    mine = _version(obj)
    try:
        return mine is not None and mine > int(version)
    except ValueError:
        return False


def _newer(candidate: dict[str, Any], known: dict[str, Any]) -> bool:
    """Whether ``candidate`` is another object of that name, or a newer version of ``known``."""
    meta_c, meta_k = candidate.get("metadata") or {}, known.get("metadata") or {}
    if meta_c.get("uid") != meta_k.get("uid"):
        return True
    version_c, version_k = meta_c.get("resourceVersion"), meta_k.get("resourceVersion")
    if version_c and version_c == version_k:
        return False  # this very version
    try:
        return int(version_c or 0) >= int(version_k or 0)
    except ValueError:
        return True
