"""An operator upgrade restarts no pod: what a new operator renders for a running Chute (issue 26)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from chute_operator.gpus import builtin_catalog
from chute_operator.metrics import OperatorMetrics
from chute_operator.reconcile import Reconciler
from chute_operator.sidecars import SIDECAR_UPDATE_ANNOTATION, SidecarPolicy, SidecarUpdates
from chute_operator.store import Store
from chute_operator.workload import RenderOptions
from chute_shared.cluster import SIDECAR_CONTAINER
from tests.unit.chute_operator.test_reconcile import KEY, FakeApi, _chute, _pod, _rolled_out

ROOT = Path(__file__).resolve().parents[3]
OLD, NEW = "repo:sidecar-old", "repo:sidecar-new"

RENDER_AS = """
import importlib.metadata, json, sys
installed = importlib.metadata.version
importlib.metadata.version = lambda name: sys.argv[1] if name == "chute_operator" else installed(name)
import yaml
from chute_operator.gpus import builtin_catalog
from chute_operator.render import render
from chute_operator.settings import Settings
from chute_operator.validation import parse_chute
from chute_operator.version import VERSION

options = Settings.from_env({}).render_options(builtin_catalog(), drain_key=b"k" * 32)
templates = {}
for path in sys.argv[2:]:
    manifest = yaml.safe_load(open(path))
    manifest["metadata"].update(namespace="models", uid="0f0e0d0c-uid")
    for child in render(parse_chute(manifest), options):
        if child["kind"] == "Deployment":
            templates[path] = {"labels": child["metadata"]["labels"], "spec": child["spec"]}
print(json.dumps({"version": VERSION, "templates": templates}))
"""


def _render_as(version: str) -> dict[str, Any]:
    examples = sorted(str(path) for path in (ROOT / "examples").glob("*.yaml"))
    found = subprocess.run(
        [sys.executable, "-c", RENDER_AS, version, *examples], capture_output=True, text=True, check=True
    )
    rendered: dict[str, Any] = json.loads(found.stdout)
    return rendered


def test_two_operator_versions_render_the_same_pod_templates() -> None:
    """Every example Chute, rendered by this operator as two versions with their default settings (a
    fresh interpreter each): the same Deployments, pod templates, labels and sidecar. Before the
    sidecar had a version of its own, its image was the operator's and every upgrade rolled every pod."""
    this, next_one = _render_as("0.1.0"), _render_as("9.9.9")
    assert (this["version"], next_one["version"]) == ("0.1.0", "9.9.9")
    assert this["templates"], "the examples render Deployments"
    assert this["templates"] == next_one["templates"]
    text = json.dumps(this["templates"])
    assert "0.1.0" not in text
    assert "9.9.9" not in text


def _reconciler(store: Store, api: FakeApi, image: str, updates: SidecarUpdates | None = None) -> Reconciler:
    options = RenderOptions(catalog=builtin_catalog(), sidecar_image=image)
    return Reconciler(api, store, options, OperatorMetrics(), lambda: True, sidecars=updates)  # type: ignore[arg-type]


async def _serving(store: Store, api: FakeApi) -> None:
    """The Chute Ready on the old operator's sidecar."""
    store.put("Chute", _chute())
    await _reconciler(store, api, OLD).reconcile(KEY)
    pod = _pod({"running": {}}, ready=True)
    pod["spec"] = copy.deepcopy(store.get("Deployment", KEY)["spec"]["template"]["spec"])  # type: ignore[index]
    store.put("Pod", pod)
    _rolled_out(store, available=1)
    api.version = 1000  # the API server's next versions are newer than those of the objects above


def _sidecar_condition(store: Store) -> dict[str, Any]:
    chute = store.get("Chute", KEY) or {}
    return next(c for c in chute["status"]["conditions"] if c["type"] == "SidecarCurrent")


def _template_sidecar(store: Store) -> str:
    deployment = store.get("Deployment", KEY) or {}
    containers = deployment["spec"]["template"]["spec"]["initContainers"]
    return str(next(c for c in containers if c["name"] == SIDECAR_CONTAINER)["image"])


async def test_a_new_operator_with_another_sidecar_keeps_the_running_chute_s_and_says_so() -> None:
    store = Store()
    api = FakeApi(store)
    await _serving(store, api)
    api.writes.clear()
    upgraded = _reconciler(store, api, NEW)  # a new operator: its own sidecar image, policy Manual
    await upgraded.reconcile(KEY)
    assert [w for w in api.writes if w[0] == "apply"] == []
    assert _template_sidecar(store) == OLD
    condition = _sidecar_condition(store)
    assert (condition["status"], condition["reason"]) == ("False", "SidecarBehind")
    assert OLD in condition["message"]
    assert NEW in condition["message"]
    assert ("Normal", "SidecarBehind") in api.events
    # the opt-in: the Deployment is applied with the new sidecar, and the condition turns True
    chute = copy.deepcopy(store.get("Chute", KEY))
    assert chute is not None
    chute["metadata"]["annotations"] = {SIDECAR_UPDATE_ANNOTATION: "true"}
    chute["metadata"]["resourceVersion"] = "5000"
    store.put("Chute", chute)
    api.version = 6000
    api.writes.clear()
    await upgraded.reconcile(KEY)
    assert ("apply", "Deployment") in api.writes
    assert _template_sidecar(store) == NEW
    assert _sidecar_condition(store)["status"] == "True"
    assert ("Normal", "SidecarCurrent") in api.events


async def test_a_chute_whose_update_waits_its_turn_says_so() -> None:
    store = Store()
    api = FakeApi(store)
    await _serving(store, api)
    busy = SidecarUpdates(SidecarPolicy(NEW, "Automatic", max_concurrent_updates=1))
    other = {"spec": {"template": {"spec": {"initContainers": [{"name": SIDECAR_CONTAINER, "image": OLD}]}}}}
    assert busy.choose(("ns", "other"), {"metadata": {}}, other, []).image == NEW  # the only slot
    api.writes.clear()
    await _reconciler(store, api, NEW, busy).reconcile(KEY)
    assert [w for w in api.writes if w[0] == "apply"] == []
    condition = _sidecar_condition(store)
    assert condition["reason"] == "SidecarBehind"
    assert "waits its turn" in condition["message"]
    assert busy.waiting == (KEY,)
