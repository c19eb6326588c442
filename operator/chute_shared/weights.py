"""Names the operator and the weights downloader (``chute_weights``) share: the cache's layout in
the pods, the downloader's exit codes, its progress lines and the failure reasons it reports."""

from __future__ import annotations

WEIGHTS_LABEL = "chutes.ai/weights"
"""On a weights cache's PVC, Job, NetworkPolicy and download pod: the cache's hash."""
WEIGHTS_MOUNT_PATH = "/weights"
"""Where the cache's volume is mounted, in the download pod (read-write) and the serving pods
(read-only)."""
HUB_CACHE_DIR = "hub"
"""The hub cache's directory on the volume (``HF_HUB_CACHE=/weights/hub``)."""
MODEL_PATH_ENV = "CHUTE_MODEL_PATH"
"""In the serving pods: the revision's snapshot folder in the cache (``HF_HUB_CACHE/models--org--name/
snapshots/REVISION``), for an engine given a path (``--model $(CHUTE_MODEL_PATH)``) and the
simulated model server, which loads and checks the files there."""
DOWNLOAD_CONTAINER = "download"
"""The download pod's container."""

EXIT_PERMANENT = 3
"""The downloader's exit code when retrying cannot help (not found, gated, unauthorized, disk full):
the Job's podFailurePolicy fails the Job at once."""
EXIT_TRANSIENT = 1
"""Any other failure (the hub unreachable, a 5xx): the Job retries within its backoffLimit."""

PROGRESS_DONE = "bytesDone"
PROGRESS_TOTAL = "bytesTotal"
"""Keys of the JSON object the downloader prints once a second: bytes on the volume, bytes in all."""

REPOSITORY_NOT_FOUND = "RepositoryNotFound"
REVISION_NOT_FOUND = "RevisionNotFound"
GATED_REPO = "GatedRepo"
UNAUTHORIZED = "HubUnauthorized"
DISK_FULL = "DiskFull"
DOWNLOAD_FAILED = "DownloadFailed"
FAILURE_REASONS = (
    REPOSITORY_NOT_FOUND,
    REVISION_NOT_FOUND,
    GATED_REPO,
    UNAUTHORIZED,
    DISK_FULL,
    DOWNLOAD_FAILED,
)
"""What the downloader writes as ``reason`` in its termination message (with ``message``)."""
