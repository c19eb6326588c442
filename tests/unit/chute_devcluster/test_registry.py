"""The local registry's pure parts: its configuration, references, the node's image pruning, the push."""

from __future__ import annotations

from pathlib import Path

import yaml

from chute_devcluster.binaries import REGISTRY_VERSION, Toolset, toolset
from chute_devcluster.images import push_command
from chute_devcluster.realnode import stale_images
from chute_devcluster.registry import (
    manifest_pulls,
    registry_command,
    registry_config,
    registry_ref,
    repository_of,
    write_registry_config,
)


def test_config_is_one_plain_http_listener_with_filesystem_storage(tmp_path: Path) -> None:
    config = registry_config(tmp_path / "storage", "127.0.0.1:5000", secret="s")
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert "tls" not in config["http"]
    assert "debug" not in config["http"]
    assert "auth" not in config
    assert config["storage"]["filesystem"] == {"rootdirectory": str(tmp_path / "storage")}
    assert config["log"]["accesslog"] == {"disabled": False}  # the tests read containerd's pulls there


def test_config_file_is_written_under_its_root(tmp_path: Path) -> None:
    path = write_registry_config(tmp_path / "registry", "127.0.0.1:5000")
    written = yaml.safe_load(path.read_text())
    assert path.parent == tmp_path / "registry"
    assert Path(written["storage"]["filesystem"]["rootdirectory"]).is_relative_to(tmp_path / "registry")
    assert written["http"]["secret"]  # else the registry makes one up and warns
    assert registry_command(Path("/bin/registry"), path) == ["/bin/registry", "serve", str(path)]


def test_registry_binary_is_a_node_binary_keyed_by_version() -> None:
    tools = toolset()
    assert tools.registry in tools.node_paths()
    assert tools.registry not in tools.control_plane_paths()
    assert tools.registry.parent.name.startswith(f"registry-{REGISTRY_VERSION}-")
    assert "registry" in Toolset.NODE_FIELDS


def test_references_under_the_registry() -> None:
    assert repository_of("localhost/chute-operator:0.1.0-abc") == "chute-operator:0.1.0-abc"
    assert repository_of("127.0.0.1:5000/team/x:1") == "team/x:1"
    assert repository_of("team/x:1") == "team/x:1"
    assert registry_ref("127.0.0.1:5000", "localhost/pause:3.10.2") == "127.0.0.1:5000/pause:3.10.2"


def test_manifest_pulls_are_containerd_gets_of_the_repository() -> None:
    log = "\n".join(
        [
            '127.0.0.1 - - [x] "HEAD /v2/chute-operator/blobs/sha256:1 HTTP/1.1" 404 0 "" "Buildah/1.28.2"',
            '127.0.0.1 - - [x] "PUT /v2/chute-operator/manifests/1 HTTP/1.1" 201 0 "" "Buildah/1.28.2"',
            '127.0.0.1 - - [x] "HEAD /v2/chute-operator/manifests/1 HTTP/1.1" 200 0 "" "containerd/1.6"',
            '127.0.0.1 - - [x] "GET /v2/chute-operator/manifests/sha256:2 HTTP/1.1" 200 9 "" "containerd/1"',
            '127.0.0.1 - - [x] "GET /v2/pause/manifests/3.10 HTTP/1.1" 200 9 "" "containerd/1.6.20"',
        ]
    )
    pulls = manifest_pulls(log, "chute-operator")
    assert len(pulls) == 2
    assert all("containerd/" in line for line in pulls)


LISTING = """REF TYPE DIGEST SIZE PLATFORMS LABELS
127.0.0.1:1111/chute-operator:1 oci sha256:aa 90.0 MiB linux/amd64 -
127.0.0.1:1111/chute-operator@sha256:aa oci sha256:aa 90.0 MiB linux/amd64 -
127.0.0.1:2222/chute-operator:1 oci sha256:aa 90.0 MiB linux/amd64 -
127.0.0.1:2222/pause:3 oci sha256:pp 400.0 KiB linux/amd64 -
127.0.0.1:2222/chute-operator:0 oci sha256:zz 90.0 MiB linux/amd64 -
localhost/chute-operator:0 docker sha256:old 300 MiB linux/amd64 -
sha256:c0ffee oci sha256:aa 90.0 MiB linux/amd64 -
sha256:dead docker sha256:old 300 MiB linux/amd64 -
"""
OTHER_IMAGES = {"127.0.0.1:2222/chute-operator:0", "localhost/chute-operator:0", "sha256:dead"}


def test_stale_images_keep_one_earlier_registry_per_wanted_image() -> None:
    wanted = {"127.0.0.1:3333/chute-operator:1": "sha256:aa", "127.0.0.1:3333/pause:3": "sha256:pp"}
    # the first listed registry's references of each wanted image stay (its layers), and the image id
    assert set(stale_images(LISTING, wanted)) == {"127.0.0.1:2222/chute-operator:1", *OTHER_IMAGES}


def test_stale_images_prefer_the_wanted_registry() -> None:
    wanted = {"127.0.0.1:2222/chute-operator:1": "sha256:aa", "127.0.0.1:2222/pause:3": "sha256:pp"}
    assert set(stale_images(LISTING, wanted)) == {
        "127.0.0.1:1111/chute-operator:1",
        "127.0.0.1:1111/chute-operator@sha256:aa",
        *OTHER_IMAGES,
    }


def test_push_is_plain_http_only_when_asked(tmp_path: Path) -> None:
    insecure = push_command("localhost/x:1", "127.0.0.1:5000/x:1", tmp_path / "d", tls_verify=False)
    assert insecure[-2:] == ["localhost/x:1", "docker://127.0.0.1:5000/x:1"]
    assert "--tls-verify=false" in insecure
    assert "oci" in insecure
    assert "--tls-verify=true" in push_command("localhost/x:1", "r.example/x:1", tmp_path / "d")
