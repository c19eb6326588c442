"""Small models for the test hub: a ``config.json`` and safetensors files of random weights."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from tests.hub import Hub, Repo

REVISION = "0123456789abcdef0123456789abcdef01234567"
"""The pinned revision the tests' models are published at."""
MIB = 1 << 20


def revision_of(text: str) -> str:
    """Another pinned revision (40 hex characters), from a word."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def write_safetensors(path: Path, tensors: dict[str, int]) -> None:
    """A safetensors file of float32 tensors of random values (``name -> element count``): an 8-byte
    little-endian header length, the JSON header, then the data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, count in tensors.items():
        header[name] = {"dtype": "F32", "shape": [count], "data_offsets": [offset, offset + 4 * count]}
        offset += 4 * count
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(text)) + text)
        for count in tensors.values():
            remaining = 4 * count
            while remaining:
                chunk = min(remaining, 4 * MIB)
                file.write(os.urandom(chunk))
                remaining -= chunk


def make_model(folder: Path, mib: int = 4, shards: int = 2) -> dict[str, Path]:
    """A model of about ``mib`` MiB in ``shards`` safetensors files, and its config: its files by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"config.json": folder / "config.json"}
    files["config.json"].write_text(json.dumps({"model_type": "chute-test", "hidden_size": 64}))
    per_shard = max(1, mib * MIB // 4 // shards)
    for index in range(shards):
        name = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / name, {f"layers.{index}.weight": per_shard})
        files[name] = folder / name
    return files


REVISION_2 = revision_of("second")
GATED_TOKEN = "hf_good"  # nosec B105  # the test hub's token, nothing else's
"""The token the gated copy wants."""


def model_hub(folder: Path, mib: int = 4) -> Hub:
    """A hub with ``test-org/tiny`` at REVISION and REVISION_2 (another model of the same size), and
    ``test-org/tiny-gated`` at REVISION (token GATED_TOKEN)."""
    files = make_model(folder / "tiny", mib)
    second = make_model(folder / "tiny-2", mib)
    hub = Hub()
    hub.add("test-org/tiny", Repo({REVISION: files, REVISION_2: second}))
    hub.add("test-org/tiny-gated", Repo({REVISION: files}, token=GATED_TOKEN))
    return hub
