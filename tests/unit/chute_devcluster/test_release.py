"""scripts/release without a registry: its checks, the chart it stages, and every command it would run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from chute_devcluster.release import (
    REGISTRY_PATTERN,
    Release,
    ReleaseError,
    set_image_repository,
    stage_chart,
)
from chute_operator.version import IMAGE_REPOSITORY, VERSION

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "release"


def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args, "--dry-run", "--helm", "helm"], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("registry", "valid"),
    [
        ("ghcr.io/chutes-ai", True),
        ("registry.example.com/team/sub", True),
        ("127.0.0.1:5000", True),
        ("localhost:5000/x", True),
        ("https://ghcr.io/chutes-ai", False),
        ("ghcr.io/Chutes", False),
        ("", False),
        ("ghcr.io//x", False),
    ],
)
def test_registry_names(registry: str, valid: bool) -> None:
    assert bool(REGISTRY_PATTERN.match(registry)) is valid


def test_names_follow_the_registry() -> None:
    release = Release("127.0.0.1:5000/team", "1.2.3", insecure=True)
    assert release.image == "127.0.0.1:5000/team/chute-operator:1.2.3"
    assert release.chart == "oci://127.0.0.1:5000/team/charts/chute-operator"
    assert release.install_command()[-1] == "--plain-http"
    assert "--plain-http" not in Release("ghcr.io/o", "1.2.3").install_command()


def test_set_image_repository_changes_that_line_alone() -> None:
    values = (ROOT / "charts" / "chute-operator" / "values.yaml").read_text()
    changed = set_image_repository(values, "127.0.0.1:5000/chute-operator")
    assert yaml.safe_load(changed)["image"]["repository"] == "127.0.0.1:5000/chute-operator"
    before, after = values.splitlines(), changed.splitlines()
    assert len(before) == len(after)
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [
        (f"  repository: {IMAGE_REPOSITORY}", "  repository: 127.0.0.1:5000/chute-operator")
    ]
    with pytest.raises(ReleaseError):
        set_image_repository("image:\n  tag: x\n", "r")


def test_stage_chart_copies_the_chart_with_the_registry_image(tmp_path: Path) -> None:
    chart = stage_chart(tmp_path, "registry.example.com/team/chute-operator")
    assert (chart / "templates").is_dir()
    assert yaml.safe_load((chart / "values.yaml").read_text())["image"]["repository"] == (
        "registry.example.com/team/chute-operator"
    )
    # the repository's own chart is untouched
    values = yaml.safe_load((ROOT / "charts" / "chute-operator" / "values.yaml").read_text())
    assert values["image"]["repository"] == IMAGE_REPOSITORY


def test_dry_run_prints_every_command_to_a_plain_http_registry(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    result = dry_run("127.0.0.1:5000", "--insecure", "--summary", str(summary))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    image = f"127.0.0.1:5000/chute-operator:{VERSION}"
    build = next(line for line in lines if " bud " in line)
    assert build.startswith("buildah ")
    assert f"--tag {image} {ROOT}" in build
    assert f"--label org.opencontainers.image.version={VERSION}" in build
    push = next(line for line in lines if " push " in line and line.startswith("buildah "))
    assert "--tls-verify=false" in push
    assert push.endswith(f"{image} docker://{image}")
    assert any(
        line.startswith("# copy charts/chute-operator") and "127.0.0.1:5000/chute-operator" in line
        for line in lines
    )
    assert any(line.startswith("helm lint --strict ") for line in lines)
    package = next(line for line in lines if line.startswith("helm package "))
    assert package.endswith(f"--version {VERSION} --app-version {VERSION}")
    assert any(
        line.startswith("helm push ")
        and line.endswith(f"chute-operator-{VERSION}.tgz oci://127.0.0.1:5000/charts --plain-http")
        for line in lines
    )
    assert lines[-1] == (
        f"helm install chute-operator oci://127.0.0.1:5000/charts/chute-operator --version {VERSION} "
        "-n chute-system --create-namespace --plain-http"
    )
    written = json.loads(summary.read_text())
    assert written["image"] == image
    assert written["image_digest"] is None
    assert written["install"] == lines[-1]


def test_dry_run_to_a_tls_registry_and_a_base_image() -> None:
    result = dry_run("ghcr.io/chutes-ai", "--version", f"v{VERSION}", "--base-image", "localhost/base:1")
    assert result.returncode == 0, result.stderr
    assert "--tls-verify=false" not in result.stdout
    assert "--plain-http" not in result.stdout
    assert "--build-arg PYTHON_IMAGE=localhost/base:1" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(
        "helm install chute-operator oci://ghcr.io/chutes-ai/charts/"
    )


def test_a_tag_that_is_not_the_checkouts_version_is_refused() -> None:
    result = dry_run("ghcr.io/chutes-ai", "--version", "v99.0.0")
    assert result.returncode == 1
    assert f"asked to release 'v99.0.0', but this checkout is version '{VERSION}'" in result.stderr
    assert result.stdout == ""


def test_a_registry_with_a_scheme_is_refused() -> None:
    result = dry_run("oci://ghcr.io/chutes-ai")
    assert result.returncode == 2
    assert "no scheme" in result.stderr
