"""The dependency direction of docs/design.md, as import contracts (import-linter, pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_import_contracts_hold() -> None:
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert status == 0, "an import contract is broken (see the output above)"


def test_every_package_beside_the_operator_is_under_the_data_plane_contract() -> None:
    """A new data-plane package (a model simulator, an activator) must import nothing of the operator."""
    packages = {p.parent.name for p in (ROOT / "operator").glob("*/__init__.py")}
    data_plane = next(c for c in CONFIG["contracts"] if c["name"].startswith("Data-plane packages"))
    assert packages - {"chute_operator", "chute_devcluster", "chute_shared"} <= set(
        data_plane["source_modules"]
    ), "add the new package to root_packages and to the data-plane contract in pyproject.toml"
    assert packages <= set(CONFIG["root_packages"])
