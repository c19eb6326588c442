"""The drain key on the real API server: the operator makes its Secret once, when it is missing, and
reads it on every start after; every Chute's drain token is keyed by it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from tests import chutes
from tests.kube_helpers import apply, eventually, get
from tests.operator_fixtures import OperatorProcess

from chute_operator.drainkey import KEY_BYTES, KEY_FIELD, ensure_drain_key
from chute_operator.kube import KubeApi
from chute_shared.cluster import DRAIN_TOKEN_ENV

pytestmark = pytest.mark.integration
SECRET = "chute-operator-drain-key"


@pytest.fixture
async def api(control_plane: Any, namespace: str) -> AsyncIterator[KubeApi]:
    async with AsyncClient(config=KubeConfig.from_file(control_plane.kubeconfig)) as client:
        api = KubeApi(client, "chute-operator", "chute-operator", "test")
        yield api
        await api.close()


def stored(cp: Any, namespace: str, name: str = SECRET) -> tuple[bytes, str]:
    """The Secret's key and resourceVersion."""
    secret = get(cp, "secret", name, namespace)
    assert secret is not None, f"no Secret {namespace}/{name}"
    return base64.b64decode(secret["data"][KEY_FIELD]), secret["metadata"]["resourceVersion"]


async def test_the_key_is_made_once_and_read_after(api: KubeApi, control_plane: Any, namespace: str) -> None:
    # Missing: made, by exactly one of several replicas starting at once; each gets that key.
    keys = await asyncio.gather(*(ensure_drain_key(api, namespace, SECRET) for _ in range(5)))
    key, version = stored(control_plane, namespace)
    assert len(key) == KEY_BYTES
    assert set(keys) == {key}
    # Present: read, never written.
    assert await ensure_drain_key(api, namespace, SECRET) == key
    assert stored(control_plane, namespace) == (key, version)
    # One made beforehand (by hand, or a restored backup) is used as it is.
    mine = b"k" * KEY_BYTES
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mine"},
        "data": {KEY_FIELD: base64.b64encode(mine).decode()},
    }
    apply(control_plane, manifest, namespace)
    assert await ensure_drain_key(api, namespace, "mine") == mine


def hook_token(cp: Any, name: str, namespace: str) -> tuple[str, str] | None:
    """The Deployment's preStop drain token and its generation (its spec's version: the controller's
    status updates leave it), once it exists."""
    deployment = get(cp, "deployment", name, namespace)
    if deployment is None:
        return None
    pod = deployment["spec"]["template"]["spec"]
    (header,) = pod["containers"][0]["lifecycle"]["preStop"]["httpGet"]["httpHeaders"]
    env = {var["name"]: var.get("value") for var in pod["initContainers"][0].get("env", [])}
    assert env[DRAIN_TOKEN_ENV] == header["value"]
    return header["value"], str(deployment["metadata"]["generation"])


def test_the_operators_start_makes_the_key_and_its_next_start_keeps_it(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    settings = {
        "CHUTE_OPERATOR_LEADER_ELECTION": "false",
        "CHUTE_OPERATOR_OPERATOR_NAMESPACE": namespace,
    }
    assert get(cp, "secret", SECRET, namespace) is None
    first = OperatorProcess(cp.kubeconfig, tmp_path, "drain-key-1", (namespace,), **settings).start()
    try:
        key, version = stored(cp, namespace)
        apply(cp, chutes.cpu_chute("keyed"), namespace)
        token, deployment_version = eventually(
            lambda: hook_token(cp, "keyed", namespace), what="the Deployment", timeout=60
        )
    finally:
        first.stop()
    uid = json.loads(cp.kubectl("get", "chute", "keyed", "-n", namespace, "-o", "json").stdout)["metadata"][
        "uid"
    ]
    assert token == hmac.new(key, f"drain/{uid}".encode(), hashlib.sha256).hexdigest()[:40]

    second = OperatorProcess(cp.kubeconfig, tmp_path, "drain-key-2", (namespace,), **settings).start()
    try:
        eventually(
            lambda: second.metric("chute_operator_reconciles_total") >= 1, what="a reconcile", timeout=60
        )
        assert stored(cp, namespace) == (key, version)  # read, not made again nor written
        assert hook_token(cp, "keyed", namespace) == (token, deployment_version)  # no rollout
    finally:
        second.stop()
