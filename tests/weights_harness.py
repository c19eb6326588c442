"""What the real-node weights test and benchmark share: the test hub outside the cluster, static
local volumes on the real node, and a Chute that serves the simulated model from its weights cache."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode_config import REAL_NODE_LABEL
from tests.hub_models import REVISION
from tests.realnode.conftest import real_chute
from tests.realnode.policy_probes import outside_server

HUB_SUBNET, HUB_PORT = "198.51.100.0/30", 8000
"""TEST-NET-2 addresses (never routed) of the hub's network namespace: outside the cluster."""
VOLUMES = Path("/var/tmp/chute-weights-test")


@contextlib.contextmanager
def outside_hub(root: Path, mib: int, rate: float | None = None) -> Iterator[str]:
    """The test hub (tests.hub) in a network namespace of its own, serving models of ``mib`` MiB at
    ``rate`` bytes a second per file at most: its endpoint."""
    address = HUB_SUBNET.rsplit(".", 1)[0] + ".2"  # as outside_server places it
    command = [sys.executable, "-m", "tests.hub", "--root", str(root), "--host", address]
    command += ["--port", str(HUB_PORT), "--mib", str(mib)] + (["--rate", str(rate)] if rate else [])
    with outside_server(HUB_SUBNET, HUB_PORT, command) as outside:
        yield f"http://{outside.address}:{outside.port}"


def hub_downloads(endpoint: str) -> dict[str, int]:
    """The hub's downloads so far, by ``repo@revision/file``."""
    # http to the test hub on this machine (bandit B310)
    with urllib.request.urlopen(f"{endpoint}/_stats", timeout=10) as response:  # nosec B310
        found: dict[str, int] = json.loads(response.read())
    return found


def _volume(name: str, storage_class: str, path: Path) -> dict[str, Any]:
    selector = {"key": REAL_NODE_LABEL, "operator": "In", "values": ["true"]}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "storageClassName": storage_class,
            "capacity": {"storage": "4Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "local": {"path": str(path)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [selector]}]}},
        },
    }


@contextlib.contextmanager
def local_storage(cp: ControlPlane, tag: str, volumes: int = 5) -> Iterator[dict[str, str]]:
    """Two StorageClasses of static local volumes on the real node (no provisioner: the control plane's
    PV binder binds them): ``local``, ``volumes`` directories, and ``small``, one 8 MiB tmpfs. Yields
    the classes' names; everything is removed after."""
    classes = {"local": f"weights-{tag}", "small": f"weights-small-{tag}"}
    root = VOLUMES / tag
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "Immediate",
        }
        for name in classes.values()
    ]
    small = root / "small"
    mounted = False
    try:
        for index in range(volumes):
            path = root / f"local-{index}"
            path.mkdir(parents=True)
            path.chmod(0o777)  # the download pod runs as 65532
            objects.append(_volume(f"{classes['local']}-{index}", classes["local"], path))
        small.mkdir(parents=True)
        mount = ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0777", "tmpfs", str(small)]
        subprocess.run(mount, check=True, timeout=30)
        mounted = True
        objects.append(_volume(f"{classes['small']}-0", classes["small"], small))
        for obj in objects:
            cp.kubectl("apply", "-f", "-", input=json.dumps(obj))
        yield classes
    finally:
        for obj in objects:
            cp.kubectl("delete", obj["kind"], obj["metadata"]["name"], "--wait=false", check=False)
        if mounted:
            subprocess.run(["umount", "-l", str(small)], check=False, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def weights_chute(
    name: str,
    image: str,
    storage_class: str,
    repo: str = "test-org/tiny",
    revision: str = REVISION,
    load_seconds_per_gib: float = 20,
    cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A simulated model server on the real node that checks and reads the revision from its weights
    cache (``--weights $(CHUTE_MODEL_PATH)``), loading ``load_seconds_per_gib`` per GiB read."""
    args = ["--weights", "$(CHUTE_MODEL_PATH)", "--load-seconds-per-gib", str(load_seconds_per_gib)]
    model = {
        "name": repo,
        "revision": revision,
        "cache": {
            "size": "1Gi",
            "storageClassName": storage_class,
            "accessMode": "ReadWriteOnce",
            **(cache or {}),
        },
    }
    return real_chute(name, image, args, model=model)
