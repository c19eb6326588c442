"""One version, one published image name, and the release's files: what a release depends on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from chute_devcluster.release import (
    SIDECAR_FILES,
    SIDECAR_PACKAGES,
    VERSION_PATTERN,
    changelog_has,
    chart_sidecar_tag,
    project_version,
    sidecar_fingerprint,
    sidecar_tag_problems,
    version_problems,
)
from chute_operator.version import IMAGE, IMAGE_REPOSITORY, SIDECAR_IMAGE, SIDECAR_TAG, VERSION
from chute_operator.wiring import DEFAULT_SIDECAR_IMAGE

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "chute-operator"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_the_chart_and_the_image_have_one_version() -> None:
    version = PYPROJECT["project"]["version"]
    assert VERSION_PATTERN.match(version), "X.Y.Z, read alike by Python, image tags and SemVer"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (version, version)
    # the installed package (an editable install reads its version once: reinstall after a bump)
    assert version == VERSION == project_version()
    assert f"{IMAGE_REPOSITORY}:{version}" == IMAGE
    assert version_problems(ROOT) == []


def test_the_chart_and_the_operator_default_to_the_image_a_release_publishes() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == IMAGE_REPOSITORY
    assert values["image"]["tag"] == "", "the tag is the chart's appVersion, the one version"
    assert DEFAULT_SIDECAR_IMAGE == SIDECAR_IMAGE == f"{IMAGE_REPOSITORY}:{SIDECAR_TAG}"
    # the name is kept in those two places only (the docs name it too)
    holders = {
        path.relative_to(ROOT).as_posix()
        for pattern in ("operator/**/*.py", "charts/**/*", "scripts/*", ".github/**/*", "Dockerfile")
        for path in ROOT.glob(pattern)
        if path.is_file() and IMAGE_REPOSITORY in path.read_text(errors="replace")
    }
    assert holders == {"operator/chute_operator/version.py", "charts/chute-operator/values.yaml"}


def test_the_changelog_has_the_current_version_and_an_unreleased_section() -> None:
    assert changelog_has(VERSION)
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[Unreleased\]$", text, re.MULTILINE)
    dated = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)
    assert VERSION in dated


def test_license_is_the_apache_license_the_package_declares() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "!LICENSE" in (ROOT / ".dockerignore").read_text().split()
    assert re.search(r"^COPY LICENSE ", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_version_problems_name_each_disagreement(tmp_path: Path) -> None:
    (tmp_path / "charts" / "chute-operator").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0.3.0"\n')
    (tmp_path / "charts" / "chute-operator" / "Chart.yaml").write_text(
        'apiVersion: v2\nname: chute-operator\nversion: 0.3.0\nappVersion: "0.2.0"\n'
    )
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2026-01-01\n")
    problems = version_problems(tmp_path, requested="v0.3.1")
    assert problems == [
        "charts/chute-operator/Chart.yaml's appVersion is '0.2.0', pyproject.toml's '0.3.0'",
        "CHANGELOG.md has no section '## [0.3.0]'",
        "asked to release 'v0.3.1', but this checkout is version '0.3.0'",
    ]
    (tmp_path / "CHANGELOG.md").write_text("## [0.3.0] - 2026-02-01\n")
    (tmp_path / "charts" / "chute-operator" / "Chart.yaml").write_text("version: 0.3.0\nappVersion: 0.3.0\n")
    assert version_problems(tmp_path, requested="v0.3.0") == []
    assert version_problems(tmp_path, requested="0.3.0") == []


def test_the_test_command_runs_the_security_lint_and_the_workflow_lint() -> None:
    script = (ROOT / "scripts" / "test").read_text()
    assert ".venv/bin/bandit -c pyproject.toml -r operator" in script
    assert '"$actionlint" -shellcheck .venv/bin/shellcheck' in script
    assert "chute_devcluster.binaries actionlint" in script
    assert {"B404", "B603"} == set(PYPROJECT["tool"]["bandit"]["skips"])


def test_the_release_workflow_publishes_signs_and_audits_on_a_version_tag() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    job = workflow["jobs"]["release"]
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert 'scripts/release "$REGISTRY" --version "$GITHUB_REF_NAME"' in runs
    assert job["needs"] == "audit"
    audit = workflow["jobs"]["audit"]  # a job of its own, beside no credentials
    assert audit["permissions"] == {"contents": "read"}
    assert "pip_audit --strict" in "\n".join(step.get("run", "") for step in audit["steps"])
    for command in ("syft scan", "cosign sign --yes", "cosign attest --yes --type spdxjson"):
        assert command in runs


def test_the_sidecar_tag_is_the_hash_of_the_sidecar_s_sources() -> None:
    """version.py and Chart.yaml name the sidecar by the hash of what it runs: after a change to the
    sidecar, set SIDECAR_SOURCES and chutes.ai/sidecar-tag to what this prints."""
    assert f"sidecar-{sidecar_fingerprint()}" == SIDECAR_TAG, sidecar_tag_problems()
    assert chart_sidecar_tag() == SIDECAR_TAG
    assert sidecar_tag_problems() == []


def test_the_sidecar_s_hash_covers_every_module_the_sidecar_process_imports() -> None:
    """What ``chute-operator sidecar`` imports of the project (a fresh interpreter) is all hashed."""
    code = (
        "import sys, chute_operator.entry, chute_sidecar.main\n"
        "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items())"
        " if n.split('.')[0].startswith('chute_') and getattr(m, '__file__', None)))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = {Path(line).resolve().relative_to(ROOT).as_posix() for line in found.stdout.split()}
    hashed = {
        path.relative_to(ROOT).as_posix()
        for package in SIDECAR_PACKAGES
        for path in (ROOT / package).rglob("*.py")
    } | set(SIDECAR_FILES)
    assert imported, found.stderr
    assert imported <= hashed


def test_the_sidecar_s_hash_moves_with_its_sources_not_with_the_version(tmp_path: Path) -> None:
    for name in (*SIDECAR_PACKAGES, *SIDECAR_FILES, "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / name)
    before = sidecar_fingerprint(tmp_path)
    assert before == sidecar_fingerprint()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'version = "{VERSION}"', 'version = "9.9.9"', 1))
    assert sidecar_fingerprint(tmp_path) == before, "the project's version alone"
    proxy = tmp_path / "operator" / "chute_sidecar" / "proxy.py"
    proxy.write_text(proxy.read_text() + "\n# a change\n")
    assert sidecar_fingerprint(tmp_path) != before
