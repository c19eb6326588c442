"""Weights caches on the real node: the download Job runs the real huggingface_hub client in the
project's image against a hub outside the cluster (a network namespace on this machine, reached
through the download pod's own NetworkPolicy), into static local volumes of a StorageClass the test
makes; the serving pods run the simulated model server, which checks and reads the files from the
read-only cache.

- two Chutes of one revision: the hub sends every file once; both serve; a serving pod runs offline,
  cannot write the cache, and its connection to the hub is dropped by its Chute's NetworkPolicy;
- a 404, a gated repository without a token, a refused token and a full disk: each reported on its
  Chute with the hub's reason (Ready=False, Degraded, a Warning Event), while a healthy Chute beside
  them serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.hub_models import REVISION, REVISION_2
from tests.kube_helpers import apply, condition, eventually, get, items
from tests.operator_fixtures import OperatorProcess
from tests.realnode.conftest import running_pods, wait_serving
from tests.realnode.policy_probes import probe
from tests.weights_harness import HUB_PORT, hub_downloads, local_storage, outside_hub, weights_chute

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(1200)]

MODEL_MIB = 48
HUB_RATE = 2 << 20
"""Bytes a second the hub sends each file at: a download lasts long enough to report progress."""
WEIGHTS = "chutes.ai/weights"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test hub, outside the cluster: its endpoint."""
    with outside_hub(tmp_path_factory.mktemp("hub"), MODEL_MIB, HUB_RATE) as endpoint:
        yield endpoint


@pytest.fixture
def storage(control_plane: ControlPlane, namespace: str) -> Iterator[dict[str, str]]:
    """Static local volumes on the real node: ``local`` directories and one 8 MiB ``small`` tmpfs."""
    with local_storage(control_plane, namespace) as classes:
        yield classes


@pytest.fixture
def weights_operator(
    control_plane: ControlPlane,
    chute_crd: Path,
    namespace: str,
    hub: str,
    tmp_path: Path,
    session_operator_paused: None,
) -> Iterator[OperatorProcess]:
    """An operator of this namespace whose download Jobs use the test hub (CHUTE_OPERATOR_HF_ENDPOINT)."""
    process = OperatorProcess(
        control_plane.kubeconfig, tmp_path, "op-weights", (namespace,), CHUTE_OPERATOR_HF_ENDPOINT=hub
    ).start()
    yield process
    process.stop()


def _weights(cp: ControlPlane, name: str, namespace: str) -> dict[str, Any]:
    return condition(get(cp, "chute", name, namespace), "Weights")


def test_two_chutes_of_one_revision_download_once_and_serve_offline(
    control_plane: ControlPlane,
    real_node: RealNode,
    project_image: str,
    namespace: str,
    storage: dict[str, str],
    hub: str,
    weights_operator: OperatorProcess,
) -> None:
    cp = control_plane
    before = hub_downloads(hub)
    for name in ("first", "second"):
        apply(cp, weights_chute(name, project_image, storage["local"]), namespace)

    def progress() -> str | None:
        found = _weights(cp, "first", namespace)
        shown = re.search(r"[0-9.]+ (B|KiB|MiB) of 48\.0 MiB \([0-9]+%\)", found.get("message", ""))
        return found["message"] if shown else None

    message = eventually(progress, "the download's progress in the status", timeout=180)
    assert "test-org/tiny" in message
    pods = {name: wait_serving(cp, name, namespace, timeout=300) for name in ("first", "second")}
    after = hub_downloads(hub)
    sent = {f: after[f] - before.get(f, 0) for f in after if f.startswith(f"test-org/tiny@{REVISION}/")}
    assert len(sent) == 3, after  # config.json and two shards
    assert set(sent.values()) == {1}, sent  # each file once, for both Chutes
    assert len(items(cp, "job", namespace, WEIGHTS)) == 1
    for name in ("first", "second"):
        assert _weights(cp, name, namespace)["reason"] == "WeightsReady"
    # the serving pod: offline, the cache read-only, its model loaded from there, no way to the hub
    pod = pods["first"]
    model = next(c for c in pod["spec"]["containers"] if c["name"] == "model")
    env = {e["name"]: e.get("value") for e in model["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    pod_name = pod["metadata"]["name"]
    log = cp.kubectl("logs", pod_name, "-n", namespace, "-c", "model").stdout
    assert "2 files" in log, log
    write = cp.kubectl(
        "exec", pod_name, "-n", namespace, "-c", "model", "--", "python3", "-c",
        "open('/weights/hub/x', 'w')", check=False,
    )  # fmt: skip
    assert "Read-only file system" in write.stderr, write.stderr
    host = hub.removeprefix("http://").split(":")[0]
    assert probe(cp, pod_name, namespace, host, HUB_PORT, container="model").outcome == "timeout"
    assert len(running_pods(cp, "second", namespace)) == 1


FAILURES = {
    # Chute: (repository, cache fields, the reason it must report)
    "absent": ("test-org/absent", {}, "RepositoryNotFound"),
    "gated": ("test-org/tiny-gated", {}, "GatedRepo"),
    "refused": ("test-org/tiny-gated", {"tokenSecretRef": {"name": "hf-token"}}, "HubUnauthorized"),
    "full": ("test-org/tiny", {}, "DiskFull"),
}


def test_each_hub_refusal_and_a_full_disk_is_reported_with_its_reason_beside_a_serving_chute(
    control_plane: ControlPlane,
    real_node: RealNode,
    project_image: str,
    namespace: str,
    storage: dict[str, str],
    hub: str,
    weights_operator: OperatorProcess,
) -> None:
    cp = control_plane
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token"},
        "stringData": {"token": "hf_no"},
    }
    apply(cp, secret, namespace)
    apply(cp, weights_chute("healthy", project_image, storage["local"]), namespace)
    for name, (repo, cache, _) in FAILURES.items():
        storage_class = storage["small"] if name == "full" else storage["local"]
        revision = REVISION_2 if name == "full" else REVISION
        apply(cp, weights_chute(name, project_image, storage_class, repo, revision, cache=cache), namespace)
    for name, (_, _, reason) in FAILURES.items():

        def reported(name: str = name, reason: str = reason) -> dict[str, Any] | None:
            ready = condition(get(cp, "chute", name, namespace), "Ready")
            return ready if ready.get("reason") == reason else None

        ready = eventually(reported, f"{name}: Ready=False {reason}", timeout=240)
        assert ready["status"] == "False"
        chute = get(cp, "chute", name, namespace)
        assert condition(chute, "Degraded")["reason"] == reason
        assert condition(chute, "Weights")["status"] == "False"
        assert get(cp, "deployment", name, namespace) is None  # nothing serves a model it does not have
        events = json.loads(
            cp.kubectl(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                f"involvedObject.name={name}",
                "-o",
                "json",
            ).stdout
        )["items"]
        assert any(e["type"] == "Warning" and e["reason"] == reason for e in events), events
    wait_serving(cp, "healthy", namespace, timeout=300)


def test_a_revision_change_downloads_before_the_rollout_while_the_old_revision_serves(
    control_plane: ControlPlane,
    real_node: RealNode,
    project_image: str,
    namespace: str,
    storage: dict[str, str],
    hub: str,
    weights_operator: OperatorProcess,
) -> None:
    cp = control_plane
    apply(cp, weights_chute("model", project_image, storage["local"]), namespace)
    old_pod = wait_serving(cp, "model", namespace, timeout=300)["metadata"]["name"]
    old_cache = items(cp, "pvc", namespace, WEIGHTS)[0]["metadata"]["name"]
    before = hub_downloads(hub)
    apply(cp, weights_chute("model", project_image, storage["local"], revision=REVISION_2), namespace)

    def downloading() -> dict[str, Any] | None:
        ready = condition(get(cp, "chute", "model", namespace), "Ready")
        return ready if ready.get("reason") == "WeightsDownloading" else None

    eventually(downloading, "Ready=False WeightsDownloading", timeout=120)
    # meanwhile the old revision's pod serves, on the old template and cache
    chute = get(cp, "chute", "model", namespace)
    assert condition(chute, "Available")["status"] == "True"
    assert [p["metadata"]["name"] for p in running_pods(cp, "model", namespace)] == [old_pod]
    deployment = get(cp, "deployment", "model", namespace)
    assert deployment is not None
    assert old_cache in json.dumps(deployment["spec"]["template"]["spec"]["volumes"])
    new_pod = wait_serving(cp, "model", namespace, timeout=300)
    env = {e["name"]: e.get("value") for e in new_pod["spec"]["containers"][0]["env"]}
    assert env["CHUTE_MODEL_PATH"].endswith(f"/snapshots/{REVISION_2}")
    sent = {f: n - before.get(f, 0) for f, n in hub_downloads(hub).items() if f"@{REVISION_2}/" in f}
    assert sorted(sent.values()) == [1, 1, 1], sent
    eventually(
        lambda: get(cp, "job", old_cache, namespace) is None, "the old cache's Job deleted", timeout=120
    )
    eventually(
        lambda: get(cp, "pvc", old_cache, namespace) is None, "the old cache's claim deleted", timeout=120
    )
