"""The command line: `run --gpu-catalog` as the GPU catalog's docs promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from chute_operator.cli import main


def test_run_refuses_an_unreadable_gpu_catalog_before_it_contacts_a_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("CHUTE_OPERATOR_GPU_CATALOG", "")  # restored after the test
    missing = tmp_path / "gpus.yaml"
    assert main(["run", "--gpu-catalog", str(missing)]) == 2
    assert f"cannot read GPU catalog {missing}" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus: [{name: x}]\n")
    assert main(["run", "--gpu-catalog", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
