"""Download one pinned revision of a model into a hub cache with the real ``huggingface_hub`` client
(which honours ``HF_ENDPOINT``)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from huggingface_hub import snapshot_download
from huggingface_hub.file_download import repo_folder_name

from chute_weights.progress import Reporter, bytes_under


def total_bytes(repo: str, revision: str, cache: Path, token: str | None) -> int:
    """The revision's size, from the hub's file listing (a dry run downloads nothing)."""
    files = snapshot_download(repo, revision=revision, cache_dir=cache, token=token, dry_run=True)
    return sum(file.file_size or 0 for file in files)


def download(
    repo: str, revision: str, cache: Path, token: str | None, out: TextIO, interval: float = 1.0
) -> Path:
    """Fill ``cache`` (a hub cache: ``models--org--name/snapshots/REVISION/...``) and return the
    snapshot's folder, printing progress lines meanwhile. Raises what the client raises."""
    total = total_bytes(repo, revision, cache, token)
    folder = cache / repo_folder_name(repo_id=repo, repo_type="model")
    with Reporter(lambda: bytes_under(folder), total, out, interval):
        path = snapshot_download(repo, revision=revision, cache_dir=cache, token=token, max_workers=4)
    return Path(path)
