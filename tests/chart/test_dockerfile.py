"""What the Dockerfile promises for `docker build` (its default base) and the chart.

The image itself is built from this Dockerfile and run in tests/image/ (buildah, no registry): user,
entrypoint, and the three commands are checked on the real image there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from chute_operator.gpus import builtin_catalog
from chute_operator.render import render
from chute_operator.validation import parse_chute
from chute_operator.version import SIDECAR_TAG
from chute_operator.workload import RenderOptions
from tests.chart.helm import ROOT, Helm, env_of, operator_container

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def base_image(dockerfile: list[tuple[str, str]]) -> str:
    args = dict(arg.split("=", 1) for keyword, arg in dockerfile if keyword == "ARG" and "=" in arg)
    return args["PYTHON_IMAGE"]


def test_instruction_parser() -> None:
    assert instructions("# c\nFROM a AS b\nRUN x \\\n && y\n") == [("FROM", "a AS b"), ("RUN", "x   && y")]


def test_base_is_slim_python_pinned_by_version(dockerfile: list[tuple[str, str]]) -> None:
    image = base_image(dockerfile)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    for keyword, arg in dockerfile:
        if keyword == "FROM":
            assert arg.split()[0] == "${PYTHON_IMAGE}", "both stages use the one pinned base"


def test_digest_pinning_is_explained() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^#.*@sha256:<digest>", text, re.MULTILINE)


def test_no_latest_anywhere(dockerfile: list[tuple[str, str]]) -> None:
    for keyword, arg in dockerfile:
        assert not re.search(r":latest\b", arg), (keyword, arg)


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**", "everything is excluded first"
    assert {"!pyproject.toml", "!operator/"} <= set(lines)


def test_chart_runs_the_image_as_the_same_user(helm: Helm) -> None:
    """The chart's runAsUser matches the image's USER, and the sidecar is the same image (its own tag)."""
    container = operator_container(helm.template())
    assert container["securityContext"]["runAsUser"] == 65532
    repository = container["image"].rpartition(":")[0]
    assert env_of(container)["CHUTE_OPERATOR_SIDECAR_IMAGE"] == f"{repository}:{SIDECAR_TAG}"


def test_sidecar_command_is_served_by_the_image_entrypoint() -> None:
    """The Deployment the operator renders runs `chute-operator sidecar`: the console script's name."""
    chute = parse_chute(yaml.safe_load((ROOT / "examples" / "tei-embedding.yaml").read_text()))
    children = render(chute, RenderOptions(catalog=builtin_catalog()))
    deployment = next(child for child in children if child["kind"] == "Deployment")
    sidecar = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert sidecar["command"] == ["chute-operator", "sidecar"]
    assert 'chute-operator = "chute_operator.entry:main"' in Path(ROOT / "pyproject.toml").read_text()
