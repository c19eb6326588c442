"""The model's weights, when the simulator is given a folder of them (``--weights``): a Hugging Face
snapshot (``config.json`` and ``*.safetensors``), checked and read through as a real server loads it."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
HEADER_LIMIT = 100 << 20
"""A safetensors header is JSON of at most this many bytes (the format's own limit)."""
CHUNK = 4 << 20
GIB = 1 << 30


class WeightsError(Exception):
    """The weights are missing, unreadable or do not match their headers."""


@dataclass(frozen=True)
class Weights:
    files: int
    tensors: int
    bytes: int

    @property
    def gib(self) -> float:
        return self.bytes / GIB


def _tensor_bytes(name: str, info: dict[str, object]) -> tuple[int, int]:
    """(start, end) of a tensor's data, checked against its dtype and shape."""
    try:
        start, end = (int(v) for v in info["data_offsets"])  # type: ignore[attr-defined]
        count = 1
        for dim in info["shape"]:  # type: ignore[attr-defined]
            count *= int(dim)
        size = DTYPE_BYTES[str(info["dtype"])]
    except (KeyError, TypeError, ValueError) as error:
        raise WeightsError(f"tensor {name}: malformed header entry ({error})") from error
    if end - start != count * size:
        raise WeightsError(f"tensor {name}: {end - start} bytes for {count} x {size}")
    return start, end


def check_safetensors(path: Path) -> int:
    """The number of tensors of a safetensors file whose header matches its size; else WeightsError."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path.name}: shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > min(HEADER_LIMIT, size - 8):
            raise WeightsError(f"{path.name}: header of {length} bytes in a file of {size}")
        try:
            header = json.loads(file.read(length))
        except ValueError as error:
            raise WeightsError(f"{path.name}: header is not JSON ({error})") from error
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((_tensor_bytes(k, v)[1] for k, v in tensors.items()), default=0)
    if 8 + length + end != size:
        raise WeightsError(f"{path.name}: {size} bytes, its header describes {8 + length + end}")
    return len(tensors)


def _read_through(path: Path) -> None:
    with path.open("rb") as file:
        while file.read(CHUNK):
            pass


def load(folder: Path) -> Weights:
    """Check ``config.json`` and every safetensors file of ``folder`` and read them through."""
    config = folder / "config.json"
    try:
        json.loads(config.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{config}: {error}") from error
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise WeightsError(f"{folder}: no safetensors files")
    tensors = total = 0
    for shard in shards:
        try:
            tensors += check_safetensors(shard)
            _read_through(shard)
            total += shard.stat().st_size
        except OSError as error:
            raise WeightsError(f"{shard}: {error}") from error
    return Weights(len(shards), tensors, total)
