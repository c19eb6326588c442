"""The simulator's weights: the test models' safetensors files (read back by the real safetensors
library), checked against their headers and read through; a broken file is refused; the load time
follows their size."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

import pytest
import safetensors

from chute_modelsim.config import parse_config
from chute_modelsim.server import ModelServer
from chute_modelsim.weights import WeightsError, check_safetensors, load
from tests.hub_models import MIB, make_model


def test_the_test_models_are_safetensors_the_library_reads(tmp_path: Path) -> None:
    files = make_model(tmp_path, mib=2, shards=2)
    for name, path in files.items():
        if name.endswith(".safetensors"):
            tensors = safetensors.deserialize(path.read_bytes())
            assert [(t[1]["dtype"], len(t[1]["data"])) for t in tensors] == [("F32", MIB)]
            assert check_safetensors(path) == 1
    found = load(tmp_path)
    assert (found.files, found.tensors) == (2, 2)
    assert found.bytes > 2 * MIB


def test_a_truncated_or_corrupt_file_is_refused(tmp_path: Path) -> None:
    files = make_model(tmp_path, mib=1, shards=1)
    shard = next(p for n, p in files.items() if n.endswith(".safetensors"))
    data = shard.read_bytes()
    shard.write_bytes(data[:-4])
    with pytest.raises(WeightsError, match="header describes"):
        load(tmp_path)
    shard.write_bytes(struct.pack("<Q", 10**9) + data[8:])
    with pytest.raises(WeightsError, match="header of"):
        load(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(WeightsError, match=r"config\.json"):
        load(tmp_path)


async def test_the_load_time_follows_the_size(tmp_path: Path) -> None:
    make_model(tmp_path, mib=8, shards=2)
    config = parse_config(
        ["--port", "0", "--admin-port", "off", "--weights", str(tmp_path), "--load-seconds-per-gib", "64"]
    )
    server = ModelServer(config, exit_process=lambda code: pytest.fail(f"exited {code}"))
    began = time.monotonic()
    await server.start()
    try:
        await asyncio.wait_for(server.loaded.wait(), 10)
    finally:
        await server.stop()
    assert time.monotonic() - began >= 0.5  # 8 MiB at 64 s per GiB


async def test_missing_weights_exit_the_process(tmp_path: Path) -> None:
    codes: list[int] = []
    config = parse_config(["--port", "0", "--admin-port", "off", "--weights", str(tmp_path / "absent")])
    server = ModelServer(config, exit_process=codes.append)
    await server.start()
    await asyncio.sleep(0.5)
    await server.stop()
    assert codes == [1]
    assert not server.loaded.is_set()
