"""The dependency direction of docs/design.md, as import contracts (import-linter, pyproject.toml).

Every package under ``operator/`` is layered by a contract that lists each of its modules
(``exhaustive``): a new module or package fails here until it is placed.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS: dict[str, dict[str, Any]] = {contract["id"]: contract for contract in CONFIG["contracts"]}
SOURCE = ROOT / "operator"
OUTSIDE_THE_DATA_PLANE = {"chute_operator", "chute_devcluster", "chute_shared"}


def _packages() -> set[str]:
    """Every package and subpackage under operator/, dotted."""
    return {
        ".".join(init.parent.relative_to(SOURCE).parts)
        for init in SOURCE.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def _layer_modules(contract: dict[str, Any], start: int = 0) -> set[str]:
    """The modules named by the contract's layers from index ``start`` on, dotted from the root."""
    (container,) = contract["containers"]
    return {
        f"{container}.{name.strip()}"
        for layer in contract["layers"][start:]
        for name in layer.replace(":", "|").split("|")
    }


def test_import_contracts_hold() -> None:
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert status == 0, "an import contract is broken (see the output above)"


def test_every_package_is_layered_exhaustively() -> None:
    """Entry points above the runtime above the pure core above the API, in every package."""
    layered = {
        container
        for contract in CONTRACTS.values()
        if contract["type"] == "layers" and contract.get("exhaustive")
        for container in contract["containers"]
    }
    roots = {package for package in _packages() if "." not in package}
    assert roots <= set(CONFIG["root_packages"]), "add the new package to root_packages in pyproject.toml"
    missing = _packages() - layered - {"chute_shared"}  # its modules are independent of each other
    assert not missing, f"give these packages an exhaustive layers contract in pyproject.toml: {missing}"
    shared = {f"chute_shared.{path.stem}" for path in (SOURCE / "chute_shared").glob("[!_]*.py")}
    assert shared == set(CONTRACTS["shared-names"]["modules"])


def test_every_data_plane_program_is_independent_of_the_others_and_of_the_operator() -> None:
    programs = {package for package in _packages() if "." not in package} - OUTSIDE_THE_DATA_PLANE
    assert programs == set(CONTRACTS["programs-independent"]["modules"])
    assert programs == set(CONTRACTS["data-plane-without-operator"]["source_modules"])
    assert programs | {"chute_operator"} == set(CONTRACTS["product-without-devcluster"]["source_modules"])


def test_the_pure_core_contract_names_every_module_below_the_runtime() -> None:
    """A module placed in the pure core's layers is kept from every client by the pure-core contract."""
    operator = CONTRACTS["operator-layers"]
    metrics_api = CONTRACTS["metricsapi-layers"]
    pure = _layer_modules(operator, operator["layers"].index("report"))
    pure |= _layer_modules(metrics_api, metrics_api["layers"].index("adapter_answer"))
    assert pure == set(CONTRACTS["pure-core"]["source_modules"])


def test_no_module_imports_by_name_at_run_time() -> None:
    """The contracts see every ``import`` statement, a lazy one inside a function too, but not
    ``importlib.import_module("chute_devcluster.cli")`` or ``__import__(...)``: a forbidden import
    written so would slip through, so none is allowed (the local cluster's own tools aside)."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if "chute_devcluster" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            called = node.func if isinstance(node, ast.Call) else None
            name = getattr(called, "attr", None) or getattr(called, "id", None)
            if name in ("import_module", "__import__"):
                found.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert found == [], "import these with an import statement, where the contracts see them"
