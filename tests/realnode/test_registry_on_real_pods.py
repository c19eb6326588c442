"""The real node pulls from the local cluster's registry (issue 26, item 2): the pause and project images
are pushed there at start, and the node's containerd pulls them over plain HTTP on loopback when a pod
needs them, as any cluster pulls from its registry; nothing is imported.

Traffic: the registry is on 127.0.0.1; the request to the Chute goes to its ClusterIP on the real node
(kept on the machine by the network guard), once.
"""

from __future__ import annotations

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from chute_devcluster.registry import manifest_pulls, registry_ready, repository_of
from tests.kube_helpers import service_url
from tests.operator_fixtures import OperatorProcess
from tests.realnode.conftest import chat, container_status, deploy, real_chute, wait_serving

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(600)]


def test_pods_run_images_pulled_from_the_local_registry(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    assert real_node.registry == cp.registry
    assert registry_ready(cp.registry)
    assert project_image.startswith(f"{cp.registry}/chute-operator:")
    assert real_node.sandbox_image.ref.startswith(f"{cp.registry}/pause:")

    manifest = real_chute("pulled", project_image, [])
    assert manifest["spec"]["imagePullPolicy"] == "IfNotPresent"
    deploy(cp, manifest, namespace)
    pod = wait_serving(cp, "pulled", namespace)
    assert pod["spec"]["nodeName"] == real_node.name
    model = next(c for c in pod["spec"]["containers"] if c["name"] == "model")
    assert (model["image"], model["imagePullPolicy"]) == (project_image, "IfNotPresent")
    # The CRI names a container's image by the first of the image's references. The kept image store
    # may still hold this image under an earlier run's registry (its layers spare the pull), so the
    # reference it reports may carry that registry's port: compare below the registry host.
    repository = repository_of(project_image).rsplit(":", 1)[0]
    for container in ("model", "chute-sidecar"):  # the sidecar runs from the same image
        status = container_status(pod, container)
        assert repository_of(status["image"]) == repository_of(project_image), status
        assert repository_of(status["imageID"]) == f"{repository}@{real_node.images[0].digest}", status
    assert chat(service_url(cp, "pulled", namespace)).status == 200

    # containerd holds the registry's references, with the digests that were pushed ...
    listing = real_node.ctr("images", "list").stdout
    digests = {fields[0]: fields[2] for fields in (line.split() for line in listing.splitlines()[1:])}
    for image in (real_node.sandbox_image, *real_node.images):
        assert digests.get(image.ref) == image.digest, listing
    # ... and pulled them: the registry's access log has containerd's manifest requests for both.
    log = (cp.log_dir / "registry.log").read_text(errors="replace")
    for image in (real_node.sandbox_image, real_node.images[0]):
        repository = repository_of(image.ref).split(":")[0]
        assert manifest_pulls(log, repository), f"no containerd pull of {repository} in the registry's log"
