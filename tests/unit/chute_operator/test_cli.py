"""The command line: `run --gpu-catalog` as the GPU catalog's docs promise."""

from __future__ import annotations

import sys
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


@pytest.mark.parametrize("command", [["dev", "status"], ["demo"]])
def test_the_local_cluster_commands_say_where_to_run_them_when_the_package_is_left_out(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image leaves the local cluster out (.dockerignore): its commands say so, not a traceback."""
    for name in list(sys.modules):
        if name == "chute_devcluster" or name.startswith("chute_devcluster."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "chute_devcluster", None)  # import fails as if not installed
    assert main(command) == 2
    assert "run it from a checkout" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["explain", "--plan", "ns/a"], "needs --cluster or --kubeconfig"),
        (["explain", "--plan", "ns/a", "--cluster", "-f", "chute.yaml"], "and no -f"),
        (["explain"], "-f/--filename is required"),
    ],
)
def test_explain_plan_reads_a_live_chute_from_a_cluster_only(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_explain_plan_takes_namespace_slash_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--plan", "a", "--cluster"]) == 1
    assert "--plan takes NAMESPACE/NAME" in capsys.readouterr().err
