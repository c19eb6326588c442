"""The activator's wake-only admission policy on a real API server: the chart's rendered policy,
binding and activator RBAC applied, then Chutes patched as the activator's ServiceAccount. The wake
annotation is the one change it may make; every other change is refused with the policy's message."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient, KubeConfig

from chute_activator.holding import Holder
from chute_activator.kube import KubeSource
from chute_activator.metrics import Metrics
from chute_activator.state import Key
from chute_shared.cluster import WAKE_ANNOTATION
from tests import chutes
from tests.chart.helm import Helm, one
from tests.kube_helpers import eventually, get, service_account_kubeconfig

pytestmark = pytest.mark.integration

CHUTE = "wake-me"
FINALIZER = "chutes.ai/test-keep"
ACTIVATOR_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "0c4a1f3e-0000-4000-8000-000000000001"}
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", *POLICY_KINDS)


class Activator:
    """The chart's activator ServiceAccount and wake-only policy, applied to the control plane."""

    def __init__(self, cp: Any, namespace: str, objects: list[dict[str, Any]]) -> None:
        self.cp, self.namespace, self.objects = cp, namespace, objects
        self.account = one(objects, "ServiceAccount")["metadata"]["name"]
        self.user = f"system:serviceaccount:{namespace}:{self.account}"
        self.policy = one(objects, "ValidatingAdmissionPolicy")

    def message(self, ending: str) -> str:
        """The message of the policy's validation whose message ends with ``ending``."""
        found = [v["message"] for v in self.policy["spec"]["validations"] if v["message"].endswith(ending)]
        assert len(found) == 1, f"not one validation message ends with {ending!r}: {found}"
        return found[0]

    def patch(self, patch: Any, *, kind: str = "merge", dry_run: bool = False, status: bool = False) -> Any:
        args = ["patch", "chute", CHUTE, "-n", self.namespace, f"--type={kind}", "-p", json.dumps(patch)]
        args += [f"--as={self.user}", "--field-manager=chute-activator"]  # the activator's manager
        args += ["--dry-run=server"] if dry_run else []
        args += ["--subresource=status"] if status else []
        return self.cp.kubectl(*args, check=False)


@pytest.fixture
def activator(helm: Helm, control_plane: Any, namespace: str, chute_crd: Path) -> Iterator[Activator]:
    """The chart's activator RBAC and wake-only policy (a release of its own, its cluster-scoped
    objects removed afterwards), and a Chute with a label, an annotation and a finalizer."""
    release = f"wk{secrets.token_hex(3)}"
    rendered = helm.template(namespace=namespace, release=release)
    objects = [
        o
        for o in rendered
        if o["kind"] in POLICY_KINDS
        or (o["kind"] in ACTIVATOR_KINDS and o["metadata"]["name"].endswith("-activator"))
    ]
    assert {o["kind"] for o in objects} == {*ACTIVATOR_KINDS, *POLICY_KINDS}
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))
    metadata = {"labels": {"team": "a"}, "annotations": {"owner": "team-a"}, "finalizers": [FINALIZER]}
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(chutes.cpu_chute(CHUTE, metadata)))
    try:
        yield Activator(cp, namespace, objects)
    finally:
        cp.kubectl(
            "patch", "chute", CHUTE, "-n", namespace, "--type=merge", "-p",
            '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip
        for obj in objects:
            if obj["kind"] in CLUSTER_SCOPED:
                cp.kubectl("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False)


def chute_now(activator: Activator) -> dict[str, Any]:
    found = get(activator.cp, "chute", CHUTE, activator.namespace)
    assert found is not None
    return found


def test_the_activator_may_write_only_the_wake_annotation(activator: Activator, tmp_path: Path) -> None:
    cp, namespace = activator.cp, activator.namespace
    spec_message = activator.message("spec")

    # The policy takes effect a moment after it is created: until then a dry run goes through.
    def refused() -> bool:
        result = activator.patch({"spec": {"image": "evil:1"}}, dry_run=True)
        return result.returncode != 0 and spec_message in result.stderr

    eventually(refused, what="the wake-only policy to refuse a spec change", timeout=60)
    policy = get(cp, "validatingadmissionpolicy", activator.policy["metadata"]["name"], "") or {}
    assert not (policy.get("status") or {}).get("typeChecking", {}).get("expressionWarnings")
    before = chute_now(activator)

    # The wake annotation: accepted.
    woken = activator.patch({"metadata": {"annotations": {WAKE_ANNOTATION: "2030-01-01T00:00:00.000000Z"}}})
    assert woken.returncode == 0, woken.stderr
    after = chute_now(activator)
    assert after["metadata"]["annotations"][WAKE_ANNOTATION] == "2030-01-01T00:00:00.000000Z"

    # Everything else: refused, each with its validation's message, the Chute unchanged.
    refusals: list[tuple[str, Any, str, str]] = [
        ("image", {"spec": {"image": "evil:1"}}, "merge", "spec"),
        ("env", {"spec": {"env": [{"name": "HF_TOKEN", "value": "x"}]}}, "merge", "spec"),
        ("service account", {"spec": {"pod": {"serviceAccountName": "admin"}}}, "merge", "spec"),
        ("label", {"metadata": {"labels": {"team": "b"}}}, "merge", "labels"),
        ("new label", {"metadata": {"labels": {"x": "y"}}}, "merge", "labels"),
        ("other annotation", {"metadata": {"annotations": {"x": "y"}}}, "merge", "another annotation"),
        ("changed annotation", {"metadata": {"annotations": {"owner": "me"}}}, "merge", "another annotation"),
        ("removed annotation", {"metadata": {"annotations": {"owner": None}}}, "merge", "another annotation"),
        ("finalizer removed", [{"op": "remove", "path": "/metadata/finalizers/0"}], "json", "finalizers"),
        ("finalizer added", {"metadata": {"finalizers": [FINALIZER, "x.io/y"]}}, "merge", "finalizers"),
        (
            "owner",
            {
                "metadata": {
                    "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u"}]
                }
            },
            "merge",
            "ownerReferences",
        ),
        (
            "long wake",
            {"metadata": {"annotations": {WAKE_ANNOTATION: "x" * 65}}},
            "merge",
            "at most 64 characters",
        ),
    ]
    for what, patch, kind, validation in refusals:
        result = activator.patch(patch, kind=kind)
        assert result.returncode != 0, f"{what}: accepted"
        assert activator.message(validation) in result.stderr, f"{what}: {result.stderr}"
        assert "Forbidden" in result.stderr or "forbidden" in result.stderr, f"{what}: {result.stderr}"
    unchanged = chute_now(activator)
    for field in ("labels", "annotations", "finalizers", "ownerReferences"):
        assert unchanged["metadata"].get(field) == after["metadata"].get(field), field
    assert unchanged["spec"] == before["spec"]
    # The policy binds the activator only: another user's change goes through.
    cp.kubectl("label", "chute", CHUTE, "-n", namespace, "--overwrite", "team=b")

    # Its RBAC gives it no status writes, and the policy would refuse them too.
    allowed = cp.kubectl(
        "auth", "can-i", "patch", "chutes.chutes.ai", "--subresource=status", f"--as={activator.user}",
        "-n", namespace, check=False,
    )  # fmt: skip
    assert allowed.stdout.strip() == "no"
    grant = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "status-writer", "namespace": namespace},
        "rules": [{"apiGroups": ["chutes.ai"], "resources": ["chutes/status"], "verbs": ["get", "patch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "status-writer", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "status-writer"},
        "subjects": [{"kind": "ServiceAccount", "name": activator.account, "namespace": namespace}],
    }
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([grant, binding]))
    status = {"status": {"observedGeneration": 99}}

    def past_rbac() -> str | None:
        """The refusal once RBAC lets the patch through to admission."""
        stderr = str(activator.patch(status, status=True).stderr)
        return None if "forbidden: User" in stderr else stderr

    written = eventually(past_rbac, what="the status grant to take effect", timeout=30)
    assert activator.message("status") in written

    # The activator's own wake, as its ServiceAccount (a token of its own), goes through.
    kubeconfig = service_account_kubeconfig(
        cp, activator.account, namespace, tmp_path / "activator.kubeconfig"
    )

    async def wake() -> None:
        async def nothing(key: Key) -> None:
            return None

        client = AsyncClient(config=KubeConfig.from_file(str(kubeconfig)))
        try:
            await KubeSource(client, Holder(nothing, Metrics())).wake((namespace, CHUTE))
        finally:
            await client.close()

    asyncio.run(wake())
    annotations = chute_now(activator)["metadata"]["annotations"]
    assert annotations[WAKE_ANNOTATION] != "2030-01-01T00:00:00.000000Z"
    assert annotations["owner"] == "team-a"


def test_the_activator_may_not_wipe_a_chutes_field_ownership(activator: Activator) -> None:
    cp, namespace = activator.cp, activator.namespace
    spec_message = activator.message("spec")

    def refused() -> bool:
        result = activator.patch({"spec": {"image": "evil:1"}}, dry_run=True)
        return result.returncode != 0 and spec_message in result.stderr

    eventually(refused, what="the wake-only policy to refuse a spec change", timeout=60)
    owned = chutes.cpu_chute(CHUTE, {"namespace": namespace}, env=[{"name": "DEBUG_DUMP", "value": "1"}])
    cp.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "-", input=json.dumps(owned))
    wiped = activator.patch({"metadata": {"managedFields": [{}]}})
    # what the wipe does: the owner removes env from its manifest and applies again; the field stays
    cp.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "-",
               input=json.dumps(chutes.cpu_chute(CHUTE, {"namespace": namespace})))  # fmt: skip
    env = chute_now(activator)["spec"].get("env")
    assert wiped.returncode != 0, f"the activator wiped the Chute's managedFields; env left behind: {env}"
