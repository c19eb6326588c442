"""Every name the programs share is spelled once, in ``chute_shared``: no program spells one itself.

Reads every module of the four programs (ast, docstrings skipped) for a string constant equal to a
public string constant of a ``chute_shared`` module.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

import chute_shared

OPERATOR = Path(__file__).resolve().parents[2] / "operator"
PROGRAMS = ("chute_operator", "chute_sidecar", "chute_activator", "chute_modelsim", "chute_weights")

GENERIC = frozenset({"concurrency", "in_flight"})
"""Fields of ``/_conn_stats`` that are also ordinary words of every program (log fields, settings,
metric labels): not checked."""

SAME_WORD_ELSEWHERE: dict[str, dict[str, str]] = {
    # value: {module under operator/: what the same spelling means there}
    "http": {
        "chute_sidecar/proxy.py": "the URL scheme",
        "chute_operator/api/expose.py": "the URL scheme of status.url",
        "chute_operator/expose.py": "the URL scheme of status.url",
    },
    "metrics": {
        "chute_operator/children.py": "the metrics Service's value of its role label",
        "chute_operator/handlers.py": "a kopf memo key",
        "chute_operator/run.py": "the operator's own metrics port, in an error",
        "chute_operator/metricsapi/forwarding.py": "a custom metrics path's namespace metrics segment",
    },
    "/metrics": {"chute_activator/app.py": "the activator's own metrics page"},
    "/readyz": {
        "chute_activator/app.py": "the activator's own readiness probe",
        "chute_operator/metricsapi/server.py": "the metrics API's own probes",
    },
    "/livez": {"chute_operator/metricsapi/server.py": "the metrics API's own probes"},
    "model": {
        "chute_operator/children.py": "the model container's port name",
        "chute_weights/download.py": "the hub's repository type",
        "chute_modelsim/openai.py": "the OpenAI request and response field",
        "chute_modelsim/server.py": "a field of the admin state",
        "chute_modelsim/tokens.py": "a word of the simulated answer",
    },
    "ready": {
        "chute_operator/metrics.py": "a label of the operator's metrics",
        "chute_operator/status.py": "Kubernetes' container status field",
        "chute_operator/store.py": "Kubernetes' container status field",
        "chute_operator/zero.py": "Kubernetes' EndpointSlice condition",
        "chute_activator/derive.py": "Kubernetes' EndpointSlice condition",
    },
    "chute-operator": {
        "chute_operator/children.py": "the console script the sidecar container runs",
        "chute_operator/cli.py": "the program's name",
        "chute_operator/controller.py": "the operator's field manager",
        "chute_operator/crd.py": "the app.kubernetes.io/name of the CRD",
        "chute_operator/settings.py": "the operator's field manager and lease",
        "chute_operator/zero.py": "the EndpointSlice manager of the activator's slice",
    },
    "chutes": {
        "chute_operator/crd.py": "the CRD's category and part-of label",
        "chute_operator/workload.py": "the app.kubernetes.io/part-of label",
        "chute_operator/weights.py": "the app.kubernetes.io/part-of label",
    },
    "chutes.ai": {"chute_operator/settings.py": "the operator's annotation prefix"},
    "Chute": {
        "chute_operator/api/__init__.py": "the model's name in __all__",
        "chute_operator/api/chute.py": "the model's kind Literal (a type cannot be a constant)",
        "chute_operator/act.py": "the store's kind key",
        "chute_operator/controller.py": "the store's kind key",
        "chute_operator/explain_plan.py": "the store's kind key",
        "chute_operator/kube.py": "the store's kind key",
        "chute_operator/reconcile.py": "the store's kind key",
        "chute_operator/validation.py": "the document's default kind",
    },
    "Unschedulable": {
        "chute_operator/rollout.py": "Kubernetes' PodScheduled reason",
        "chute_operator/status.py": "Kubernetes' PodScheduled reason",
    },
    "download": {
        "chute_weights/main.py": "its command's name",
        "chute_operator/children.py": "the download Job's command",
    },
    "ImagePullBackOff": {"chute_operator/status.py": "the kubelet's waiting reason"},
    "CrashLoopBackOff": {"chute_operator/status.py": "the kubelet's waiting reason"},
}
"""Where a shared value is spelled with another meaning (or in a module another change owns)."""


def shared_values() -> dict[str, str]:
    """Every public str constant of a ``chute_shared`` module: value -> ``module.NAME``."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(chute_shared.__path__):
        module = importlib.import_module(f"chute_shared.{info.name}")
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str):
                found.setdefault(value, f"{info.name}.{name}")
    return found


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string nodes that are docstrings (module, class, function) or attribute docs."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for statement in body:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                skipped.add(id(statement.value))
    return skipped


def spelled(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, value)`` of every string constant of a module but its docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def copies(values: dict[str, str], root: Path = OPERATOR) -> list[str]:
    """``path:line`` of every shared value a program spells, but the exceptions above."""
    found = []
    for program in PROGRAMS:
        for path in sorted((root / program).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for line, value in spelled(path):
                if (
                    value in values
                    and value not in GENERIC
                    and relative not in SAME_WORD_ELSEWHERE.get(value, {})
                ):
                    found.append(f"{relative}:{line}: {value!r} is chute_shared.{values[value]}")
    return found


def test_no_program_spells_a_shared_name() -> None:
    found = copies(shared_values())
    assert not found, "import these from chute_shared:\n" + "\n".join(found)


def test_the_exceptions_are_still_needed() -> None:
    """An exception whose spelling is gone (or whose value is no longer shared) is dropped."""
    values = shared_values()
    unused = [value for value in SAME_WORD_ELSEWHERE if value not in values]
    for value, modules in SAME_WORD_ELSEWHERE.items():
        for module in modules:
            if all(found != value for _, found in spelled(OPERATOR / module)):
                unused.append(f"{module}: {value!r}")
    assert not unused


def test_a_copy_is_found_but_not_in_a_docstring(tmp_path: Path) -> None:
    (tmp_path / "chute_activator").mkdir()
    (tmp_path / "chute_activator" / "kube.py").write_text(
        '"""Reads chutes.ai/chute."""\n\n'
        'LABEL = "chutes.ai/chute"\n"""The chutes.ai/chute label."""\n\n\n'
        'def f() -> str:\n    """chutes.ai/chute"""\n    return "chutes.ai/chute"\n'
    )
    assert copies(shared_values(), tmp_path) == [
        "chute_activator/kube.py:3: 'chutes.ai/chute' is chute_shared.cluster.CHUTE_LABEL",
        "chute_activator/kube.py:9: 'chutes.ai/chute' is chute_shared.cluster.CHUTE_LABEL",
    ]


def test_the_shared_package_imports_only_the_standard_library() -> None:
    for path in (OPERATOR / "chute_shared").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert name.split(".")[0] in sys.stdlib_module_names, f"{path.name} imports {name}"
