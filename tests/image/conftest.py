"""The images built from the Dockerfile, once per session (cached by input hash across sessions).

Needs buildah, mmdebstrap and gcc (``scripts/setup`` installs them) and root; without them the tests
are skipped, or fail when ``CI=true``. The first build takes minutes (a Debian rootfs), later ones reuse
the cached tars, and a code change rebuilds only the project's layers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.images import ImageBuildError, Images, buildah_command, ensure_images

BUILD_TIMEOUT = 1200


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"images cannot be built (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(f"images cannot be built: {reason}")


@pytest.fixture(scope="session")
def images() -> Images:
    missing = [tool for tool in ("buildah", "mmdebstrap", "gcc") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"missing {', '.join(missing)} (scripts/setup installs them)")
    if os.geteuid() != 0:
        _unavailable("building the Debian base needs root")
    try:
        return ensure_images()
    except ImageBuildError as error:
        _unavailable(str(error))
        raise


def image_config(tar: Path) -> dict[str, Any]:
    """The OCI/Docker image config inside a docker-archive tar (``config`` holds Entrypoint, User...)."""
    with tarfile.open(tar) as archive:
        manifest_file = archive.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.load(manifest_file)
        assert len(manifest) == 1
        config_file = archive.extractfile(manifest[0]["Config"])
        assert config_file is not None
        config: dict[str, Any] = json.load(config_file)
        config["RepoTags"] = manifest[0]["RepoTags"]
        config["Layers"] = manifest[0]["Layers"]
        return config


class Container:
    """A working container made from a docker-archive tar (no registry), run with chroot isolation."""

    def __init__(self, tar: Path) -> None:
        self.id = subprocess.run(
            buildah_command("from", "--quiet", f"docker-archive:{tar}"),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def command(self, *argv: str) -> list[str]:
        return buildah_command("run", "--isolation", "chroot", self.id, "--", *argv)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*argv), capture_output=True, text=True, timeout=120, check=False)

    def remove(self) -> None:
        subprocess.run(buildah_command("rm", self.id), capture_output=True, check=False)


@pytest.fixture
def project_container(images: Images) -> Iterator[Container]:
    container = Container(images.project.tar)
    yield container
    container.remove()


@pytest.fixture
def pause_container(images: Images) -> Iterator[Container]:
    container = Container(images.pause.tar)
    yield container
    container.remove()
