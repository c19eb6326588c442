"""Weights caches: one per model revision (and storage), filled once by a download Job and shared by
every Chute of the namespace that serves it (docs/weights.md). Pure: no I/O, no clients.

What a Chute wants (:func:`cache_of`), how it joins or leaves a cache that other Chutes may share
(:func:`join_manifest`, :func:`leave_patch`), and what the cache's objects say of its state
(:func:`weights_state`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from chute_operator.api import ChuteSpec
from chute_operator.api import reasons as r
from chute_operator.conditions import find, parse_time
from chute_shared import weights as shared
from chute_shared.cluster import CHUTE_KIND, MANAGED_BY

Manifest = dict[str, Any]
WEIGHTS_PREFIX = "chute-weights-"
"""A cache's PVC, Job and NetworkPolicy are named this and the cache's hash."""
WEIGHTS_KINDS = ("NetworkPolicy", "PersistentVolumeClaim", "Job")
"""A cache's objects, in apply order: the download pod's egress is admitted before it runs."""
FIELD_MANAGER_PREFIX = "chute-operator-weights-"
"""Each Chute joins a cache with a field manager of its own, this and its uid: it owns its owner
reference only, never another Chute's."""
POLL_SECONDS = 5.0
"""While a cache downloads, its Chutes are reconciled this often (the progress in the status)."""
BACKOFF_LIMIT = 2
"""Retries of the download pod for a transient failure (a permanent one fails the Job at once)."""
DOWNLOAD_DEADLINE_SECONDS = 12 * 3600
"""The download Job's ``activeDeadlineSeconds`` by default (the operator's
``CHUTE_OPERATOR_WEIGHTS_DOWNLOAD_DEADLINE_SECONDS``): a hub that trickles bytes must not hold a pod
with egress, and the Chute Downloading, for ever."""
JOB_FAILED_BY_POLICY = "PodFailurePolicy"
"""The reason of a Job's Failed condition when a pod failure policy's FailJob rule matched: the
downloader's permanent exit code, even when the pod that reported it is gone."""
MAX_DEADLINE_SECONDS = 2**31 - 1
"""The longest deadline the setting takes (0 fails every Job at once; past about 9.2e9 the Job
controller's duration overflows, which does the same)."""
RETRY_SECONDS = 300.0
"""A download that failed for a transient reason (the hub unreachable or answering 5xx, its deadline
passed) is tried again this long after its Job failed: the Job is deleted and made again. A permanent
failure (not found, gated, a refused token, a full disk) waits for the Chute's spec to change, or for
someone to delete the Job."""


@dataclass(frozen=True)
class WeightsCache:
    """The cache a Chute's spec asks for."""

    key: str
    """12 hex characters of a SHA-256 of what makes the cache: repository, revision, storage, token."""
    namespace: str
    repo: str
    revision: str
    size: str
    storage_class: str | None
    access_mode: str
    token_secret: dict[str, str] | None
    image: str
    endpoint: str | None
    """``HF_ENDPOINT`` of the download (a mirror); None: the client's default hub."""
    tolerations: tuple[dict[str, Any], ...] = ()
    """The download pod's: the first Chute's (its GPU taints'), so that it may run where the serving
    pods do (a ReadWriteOnce volume binds to the node that mounts it first). Not part of the key."""
    deadline_seconds: int = DOWNLOAD_DEADLINE_SECONDS
    """The download Job's ``activeDeadlineSeconds``. Not part of the key."""

    @property
    def name(self) -> str:
        return WEIGHTS_PREFIX + self.key

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "chute-weights",
            "app.kubernetes.io/component": "weights",
            "app.kubernetes.io/part-of": "chutes",
            "app.kubernetes.io/managed-by": MANAGED_BY,
            shared.WEIGHTS_LABEL: self.key,
        }

    @property
    def hub_cache(self) -> str:
        """``HF_HUB_CACHE`` in the download and serving pods."""
        return f"{shared.WEIGHTS_MOUNT_PATH}/{shared.HUB_CACHE_DIR}"


def cache_key(
    repo: str,
    revision: str,
    storage_class: str | None,
    access_mode: str,
    size: str,
    token: Mapping[str, str] | None = None,
) -> str:
    """The cache's hash: its revision, its storage, and the token's Secret (a Chute that changes its
    token gets a new download, not the old one's failure)."""
    secret = [token["name"], token["key"]] if token else None
    text = json.dumps([repo, revision, storage_class, access_mode, size, *([secret] if secret else [])])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_of(
    spec: ChuteSpec,
    namespace: str,
    image: str,
    endpoint: str | None,
    tolerations: Iterable[dict[str, Any]] = (),
    deadline_seconds: int = DOWNLOAD_DEADLINE_SECONDS,
) -> WeightsCache | None:
    """The cache of ``spec.model.cache``; None without one (the API requires a revision with it)."""
    model = spec.model
    if model is None or model.cache is None or model.revision is None:
        return None
    cache = model.cache
    token = cache.token_secret_ref.model_dump() if cache.token_secret_ref else None
    key = cache_key(
        model.name, model.revision, cache.storage_class_name, cache.access_mode, cache.size, token
    )
    return WeightsCache(
        key=key,
        namespace=namespace,
        repo=model.name,
        revision=model.revision,
        size=cache.size,
        storage_class=cache.storage_class_name,
        access_mode=cache.access_mode,
        token_secret=token,
        image=image,
        endpoint=endpoint,
        tolerations=tuple(tolerations),
        deadline_seconds=deadline_seconds,
    )


# Sharing


def owner_reference(chute: Mapping[str, Any]) -> dict[str, Any]:
    """This Chute as one of a shared object's owners (not its controller: it has none)."""
    meta = chute.get("metadata") or {}
    return {
        "apiVersion": chute.get("apiVersion", ""),
        "kind": chute.get("kind", CHUTE_KIND),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
    }


def owners(obj: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return list(((obj or {}).get("metadata") or {}).get("ownerReferences") or [])


def is_owner(obj: Mapping[str, Any] | None, uid: str | None) -> bool:
    return bool(uid) and any(ref.get("uid") == uid for ref in owners(obj))


def is_cache_object(obj: Mapping[str, Any] | None, key: str | None = None) -> bool:
    """Whether ``obj`` is a weights cache's object (of the cache ``key``, when given)."""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    found = labels.get(shared.WEIGHTS_LABEL)
    return bool(found) and labels.get("app.kubernetes.io/managed-by") == MANAGED_BY and key in (None, found)


def field_manager(uid: str) -> str:
    return FIELD_MANAGER_PREFIX + uid


def join_manifest(manifest: Manifest, live: Manifest | None, chute: Mapping[str, Any]) -> Manifest:
    """What the Chute applies (with its own field manager) to be one of the object's owners: the whole
    object when it does not exist, else only its labels and the Chute's owner reference (the spec
    another Chute created is never touched: a Job's template is immutable)."""
    reference = owner_reference(chute)
    meta = manifest["metadata"]
    if live is None:
        return {**manifest, "metadata": {**meta, "ownerReferences": [reference]}}
    short = {"name": meta["name"], "namespace": meta["namespace"], "labels": meta["labels"]}
    return {
        "apiVersion": manifest["apiVersion"],
        "kind": manifest["kind"],
        "metadata": {**short, "ownerReferences": [reference]},
    }


def leave_patch(uid: str) -> dict[str, Any]:
    """The strategic-merge patch that removes the Chute's owner reference (by its merge key, uid)."""
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}]}}


def mounted_claim(deployment: Mapping[str, Any] | None) -> str | None:
    """The weights cache's claim the Deployment's pod template mounts, if any."""
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    for volume in (template.get("spec") or {}).get("volumes") or []:
        if volume.get("name") == WEIGHTS_VOLUME:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            return str(claim) if claim else None
    return None


WEIGHTS_VOLUME = "chute-weights"
"""The serving pod's volume of the cache (read-only)."""


# State


ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class WeightsState:
    """The Weights condition: Unknown (pending), False (downloading, or failed), True (ready)."""

    status: ConditionStatus
    reason: str
    message: str

    @property
    def ready(self) -> bool:
        return self.status == "True"

    @property
    def failed(self) -> bool:
        return self.reason in r.WEIGHTS_FAILURES

    @property
    def working(self) -> bool:
        """Pending or downloading: it will get there on its own."""
        return not (self.ready or self.failed)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def progress_of(line: str) -> tuple[int, int] | None:
    """(bytes done, bytes in all) from a progress line of the downloader; None for any other line."""
    try:
        found = json.loads(line)
        done, total = int(found[shared.PROGRESS_DONE]), int(found[shared.PROGRESS_TOTAL])
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):  # any pod may log it
        return None
    return done, total


def _downloading(progress: tuple[int, int] | None) -> str:
    if progress is None or progress[1] <= 0:
        return "downloading (no progress reported yet)"
    done, total = progress
    return f"downloading: {_size(done)} of {_size(total)} ({100 * done // total}%)"


def _true(obj: Mapping[str, Any] | None, kind: str) -> dict[str, Any] | None:
    found = find(((obj or {}).get("status") or {}).get("conditions") or [], kind)
    return found if found and found.get("status") == "True" else None


def _termination(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != shared.DOWNLOAD_CONTAINER:
            continue
        for state in ("state", "lastState"):
            message = ((container.get(state) or {}).get("terminated") or {}).get("message")
            try:
                found = json.loads(message) if message else None
            except (ValueError, RecursionError):
                found = None
            if isinstance(found, dict) and found.get("reason") in shared.FAILURE_REASONS:
                finished = (container.get(state) or {}).get("terminated", {}).get("finishedAt")
                return {**found, "finished": str(finished or "")}
    return None


def _failure(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> WeightsState:
    """The Job failed: the reason its last failed pod wrote, else the Job's own message (a transient
    failure: tried again RETRY_SECONDS after)."""
    reports = [found for pod in pods if (found := _termination(pod))]
    if reports:
        # the report that failed the Job: a permanent one (only its exit code has a FailJob rule),
        # else the last to finish (pods come in the store's order, by name after a relist)
        report = max(reports, key=lambda found: (found["reason"] != r.DOWNLOAD_FAILED, found["finished"]))
        reason, message = str(report["reason"]), str(report.get("message") or report["reason"])
    else:
        failed = _true(job, "Failed") or {}
        reason = r.DOWNLOAD_FAILED
        message = str(failed.get("message") or failed.get("reason") or "the download Job failed")
    if reason == r.DOWNLOAD_FAILED:
        message = f"{message} (tried again {RETRY_SECONDS:.0f}s after it failed)"
    return WeightsState("False", reason, message)


def stale(pvc: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Whether the claim was made after the Job (deleted by hand and made again, empty): the Job's
    download went to a claim that is gone. The claim is always applied before its Job."""
    made = parse_time((pvc.get("metadata") or {}).get("creationTimestamp"))
    started = parse_time(
        (job.get("metadata") or {}).get("creationTimestamp") or (job.get("status") or {}).get("startTime")
    )
    return made is not None and started is not None and made > started


@dataclass(frozen=True)
class Restart:
    """The download Job to delete (at its resourceVersion), so that the next apply makes it again."""

    name: str
    version: str
    why: str


def restart(view: WeightsView, state: WeightsState, now: datetime) -> tuple[Restart | None, float | None]:
    """Whether to delete the cache's Job now (its claim is newer, or it failed for a transient reason
    RETRY_SECONDS ago), else in how many seconds to look again (None: no retry due). ``state``: the
    view's (``view.state()``)."""
    pvc, job = view.live_of("PersistentVolumeClaim"), view.live_of("Job")
    if pvc is None or job is None:
        return None, None
    meta = job.get("metadata") or {}
    name, version = str(meta.get("name", "")), str(meta.get("resourceVersion", ""))
    if meta.get("deletionTimestamp"):
        return None, POLL_SECONDS  # being deleted already (a finalizer, a pod on a lost node)
    if stale(pvc, job):
        return Restart(name, version, "its claim was made again after the download"), None
    failed = _true(job, "Failed")
    if failed is None or state.reason != r.DOWNLOAD_FAILED or failed.get("reason") == JOB_FAILED_BY_POLICY:
        return None, None  # not failed, failed for good, or by the FailJob rule (a permanent exit code)
    since = parse_time(failed.get("lastTransitionTime")) or parse_time(
        (job.get("status") or {}).get("startTime")
    )
    wait = min(RETRY_SECONDS, RETRY_SECONDS - ((now - since).total_seconds() if since else RETRY_SECONDS))
    if wait > 0:  # (never longer than the pause: a control plane's clock ahead of ours)
        return None, wait
    return Restart(name, version, f"it failed for a transient reason, {RETRY_SECONDS:.0f}s ago or more"), None


def _unscheduled(pods: Iterable[Mapping[str, Any]]) -> str | None:
    for pod in pods:
        scheduled = find((pod.get("status") or {}).get("conditions") or [], "PodScheduled") or {}
        if scheduled.get("status") == "False":
            return str(scheduled.get("message") or scheduled.get("reason") or "not scheduled")
    return None


def job_pods(job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods the Job owns: any pod of the namespace may wear the cache's label (and a container
    named like the download's), none may speak for the download."""
    uid = ((job or {}).get("metadata") or {}).get("uid")
    return [pod for pod in pods if not uid or is_owner(pod, uid)]


def weights_state(
    cache: WeightsCache,
    pvc: Mapping[str, Any] | None,
    job: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]] = (),
    progress: tuple[int, int] | None = None,
) -> WeightsState:
    """What the cache's PVC, its Job and the Job's pods say (``progress``: the running pod's last
    progress line)."""
    where = f"{cache.repo}@{cache.revision[:12]}"
    if pvc is None or job is None:
        return WeightsState("Unknown", r.WEIGHTS_PENDING, f"creating the cache of {where} ({cache.name})")
    if stale(pvc, job):
        return WeightsState(
            "Unknown",
            r.WEIGHTS_PENDING,
            f"the cache's claim was made again after its download: downloading {where} again",
        )
    if _true(job, "Complete"):
        return WeightsState("True", r.WEIGHTS_READY, f"{where} is in the cache {cache.name}")
    pods = job_pods(job, pods)
    if _true(job, "Failed"):
        return _failure(job, pods)
    unscheduled = _unscheduled(pods)
    if unscheduled is not None:
        return WeightsState("Unknown", r.WEIGHTS_PENDING, f"the download pod waits: {unscheduled}")
    running = any((pod.get("status") or {}).get("phase") == "Running" for pod in pods)
    if not running and (pvc.get("status") or {}).get("phase") != "Bound":
        storage = cache.storage_class or "the default StorageClass"
        return WeightsState(
            "Unknown", r.WEIGHTS_PENDING, f"the cache's claim waits for a volume of {storage}"
        )
    return WeightsState("False", r.WEIGHTS_DOWNLOADING, f"{where}: {_downloading(progress)}")


# One reconcile


@dataclass(frozen=True)
class WeightsView:
    """The cache a Chute wants, as observed: its objects (desired, and live where they exist), the
    download pods and the running one's last progress line."""

    cache: WeightsCache
    desired: tuple[Manifest, ...]
    """The cache's objects as rendered, without owners, in WEIGHTS_KINDS order."""
    live: tuple[Manifest | None, ...]
    """Each of them as the API server has it (None: missing, or in the way)."""
    in_the_way: tuple[str, ...] = ()
    """``Kind name`` of objects of a cache's name that are not that cache's: never written to."""
    pods: tuple[Manifest, ...] = ()
    progress: tuple[int, int] | None = None

    def live_of(self, kind: str) -> Manifest | None:
        return next(
            (live for m, live in zip(self.desired, self.live, strict=True) if m["kind"] == kind), None
        )

    def state(self) -> WeightsState:
        return weights_state(
            self.cache, self.live_of("PersistentVolumeClaim"), self.live_of("Job"), self.pods, self.progress
        )


def joins(view: WeightsView, chute: Mapping[str, Any]) -> tuple[Manifest, ...]:
    """What the Chute applies to own its share of the cache: each object missing, or lacking its owner
    reference (none of an object in the way)."""
    uid = (chute.get("metadata") or {}).get("uid")
    in_the_way = set(view.in_the_way)
    return tuple(
        join_manifest(manifest, live, chute)
        for manifest, live in zip(view.desired, view.live, strict=True)
        if f"{manifest['kind']} {manifest['metadata']['name']}" not in in_the_way and not is_owner(live, uid)
    )


def leaves(
    owned: Iterable[Manifest],
    wanted: WeightsCache | None,
    deployment: Mapping[str, Any] | None,
    rolling: bool,
) -> tuple[tuple[str, str], ...]:
    """The caches' objects (kind, name) the Chute leaves: those of caches it owns a share of but no longer
    wants, once its Deployment does not mount them and no rollout is under way (old pods may)."""
    if rolling:
        return ()
    mounted = mounted_claim(deployment)
    left = []
    for obj in owned:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        if (wanted is not None and name == wanted.name) or name == mounted:
            continue
        left.append((str(obj.get("kind", "")), name))
    return tuple(left)
