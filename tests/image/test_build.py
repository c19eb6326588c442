"""The images really built from the Dockerfile (buildah, no registry) and really run."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chute_devcluster.images import (
    KEEP_RECENT_SECONDS,
    PAUSE_REPOSITORY,
    PROJECT_REPOSITORY,
    Images,
    _prune_project_images,
    buildah_command,
    ensure_images,
    images_dir,
)

from .conftest import BUILD_TIMEOUT, Container, image_config

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT)


def test_the_image_runs_operator_sidecar_and_modelsim_as_65532(project_container: Container) -> None:
    for argv, expected in (
        (["chute-operator", "--help"], "usage: chute-operator"),
        (["chute-operator", "sidecar", "--help"], "--upstream"),
        (["chute-operator", "modelsim", "--help"], "--crash-after-requests"),
        (["python3", "-c", "import os; print(os.getuid(), os.getgid())"], "65532 65532"),
    ):
        result = project_container.run(*argv)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
        assert expected in result.stdout, (argv, result.stdout)


def test_project_image_config(images: Images) -> None:
    config = image_config(images.project.tar)
    assert config["RepoTags"] == [images.project.ref]
    repository, tag = images.project.ref.rsplit(":", 1)
    assert repository == PROJECT_REPOSITORY
    assert tag != "latest"
    assert tag.startswith("0.1.0-")
    runtime = config["config"]
    assert runtime["User"] == "65532:65532"
    assert runtime["Entrypoint"] == ["chute-operator"]
    assert runtime["Cmd"] == ["run"]
    assert any(env.startswith("PATH=/opt/venv/bin:") for env in runtime["Env"])


def test_the_ca_bundle_stays_out_of_the_layers(images: Images) -> None:
    """The machine's CA directory was mounted for the RUN steps, not copied into the image."""
    with tarfile.open(images.project.tar) as archive:
        config = image_config(images.project.tar)
        top = archive.extractfile(config["Layers"][-1])
        assert top is not None
        with tarfile.open(fileobj=top) as layer:
            names = layer.getnames()
    assert any(name.startswith("opt/venv/") for name in names)
    assert not any(name.startswith("etc/") for name in names), "only the virtualenv is in the last layer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_modelsim_serves_from_the_image(project_container: Container) -> None:
    """chroot isolation shares the machine's network: the simulator answers on loopback."""
    port, admin_port = _free_port(), _free_port()
    argv = ["chute-operator", "modelsim", "--port", str(port), "--admin-port", str(admin_port)]
    command = project_container.command(*argv)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the simulator did not come up"
                time.sleep(0.2)
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}).encode()
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["usage"]["completion_tokens"] == 3
        crash_url = f"http://127.0.0.1:{admin_port}/admin/crash?exit_code=7"
        crash = urllib.request.Request(crash_url, method="POST")
        with urllib.request.urlopen(crash, timeout=10) as response:
            assert response.status == 202
        assert process.wait(30) == 7, "the crash switch's exit status comes through buildah run"
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def test_pause_image_is_one_static_binary(images: Images, pause_container: Container) -> None:
    config = image_config(images.pause.tar)
    assert images.pause.ref.startswith(PAUSE_REPOSITORY + ":")
    assert config["RepoTags"] == [images.pause.ref]
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65535:65535"
    with tarfile.open(images.pause.tar) as archive:
        (layer_name,) = config["Layers"]
        layer_file = archive.extractfile(layer_name)
        assert layer_file is not None
        with tarfile.open(fileobj=layer_file) as layer:
            assert [name for name in layer.getnames() if not layer.getmember(name).isdir()] == ["pause"]
    result = pause_container.run("/pause", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pause.c v")


def test_a_second_call_reuses_the_cached_tars(images: Images) -> None:
    """Nothing is rebuilt: the same files (a build would rename a new one into place)."""
    files = [(image.tar.stat().st_ino, image.tar.stat().st_size) for image in vars(images).values()]
    again = ensure_images()
    assert again == images
    assert [(image.tar.stat().st_ino, image.tar.stat().st_size) for image in vars(again).values()] == files


def _fake_project_tar(path: Path, ref: str, age_seconds: float) -> None:
    manifest = json.dumps([{"Config": "c.json", "RepoTags": [ref], "Layers": []}]).encode()
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))


def test_pruning_keeps_recent_and_newest_tars(images: Images) -> None:
    """Old unused project tars go; ones another worktree used within the hour stay."""
    directory = images_dir()
    old = [directory / f"chute-operator-0ld{number:013d}.tar" for number in range(3)]
    recent = [directory / f"chute-operator-rec{number:013d}.tar" for number in range(2)]
    for path in old:
        _fake_project_tar(path, f"{PROJECT_REPOSITORY}:0.1.0-old", KEEP_RECENT_SECONDS + 3600)
    for path in recent:
        _fake_project_tar(path, f"{PROJECT_REPOSITORY}:0.1.0-recent", 60)
    listing = subprocess.run(
        buildah_command("images", "--all", "--json"), capture_output=True, text=True, check=True
    )
    every_image = {entry["id"] for entry in json.loads(listing.stdout)}
    try:
        _prune_project_images(keep=images.project, used=every_image)
        assert not any(path.exists() for path in old)
        assert all(path.exists() for path in recent)
        assert images.project.tar.exists()
    finally:
        for path in old + recent:
            path.unlink(missing_ok=True)
