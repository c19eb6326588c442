"""The chart a release publishes, made as scripts/release makes it (with the real helm; no registry)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import yaml

from chute_devcluster.release import CHART_NAME, Release, plan_steps
from chute_operator.version import SIDECAR_TAG, VERSION
from tests.chart.helm import Helm, env_of, operator_container


def test_the_packaged_chart_has_the_version_and_installs_the_image_pushed_with_it(
    helm: Helm, tmp_path: Path
) -> None:
    release = Release("127.0.0.1:5000/team", VERSION, insecure=True)
    steps = plan_steps(release, tmp_path, helm=str(helm.binary))
    stage, lint, package = (
        next(step for step in steps if step.describe.startswith(word)) for word in ("copy", "lint", "package")
    )
    assert stage.action is not None
    stage.action()
    assert helm.run(*lint.command[1:]).returncode == 0
    helm.run(*package.command[1:])
    archive = tmp_path / f"{CHART_NAME}-{VERSION}.tgz"
    with tarfile.open(archive) as packed:
        chart = yaml.safe_load(packed.extractfile(f"{CHART_NAME}/Chart.yaml").read())  # type: ignore[union-attr]
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)
    objects = [doc for doc in yaml.safe_load_all(helm.run("template", "co", str(archive)).stdout) if doc]
    container = operator_container(objects)
    assert container["image"] == f"127.0.0.1:5000/team/chute-operator:{VERSION}"
    # the sidecar: the same image under the sidecar's tag, which the release pushes too
    assert env_of(container)["CHUTE_OPERATOR_SIDECAR_IMAGE"] == release.sidecar_image
    assert release.sidecar_image == f"127.0.0.1:5000/team/chute-operator:{SIDECAR_TAG}"
    pushed = [step.command[-1] for step in steps if step.command and step.command[-1].startswith("docker://")]
    assert pushed == [f"docker://{release.image}", f"docker://{release.sidecar_image}"]
