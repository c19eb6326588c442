"""The simulator is a data-plane package of its own: it imports nothing of the operator or the sidecar."""

from __future__ import annotations

import ast

from .conftest import OPERATOR_DIR

FORBIDDEN = ("chute_operator", "chute_sidecar")


def test_imports_nothing_of_the_operator_or_the_sidecar() -> None:
    modules = sorted((OPERATOR_DIR / "chute_modelsim").glob("*.py"))
    assert modules
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{module.name} imports {name}"
