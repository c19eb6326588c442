"""What the image cache keys on, without building: context files, hashes, the machine's apt sources."""

from __future__ import annotations

import shutil
from pathlib import Path

from chute_devcluster.images import (
    Image,
    context_files,
    host_debian_sources,
    host_suite,
    project_image_of,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = Image("localhost/chute-operator-base:bookworm-0", Path("/nonexistent"), "0")


def _context_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, copy / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "operator", copy / "operator", ignore=ignored)
    return copy


def test_context_is_what_dockerignore_lets_through() -> None:
    files = {path.as_posix() for path in context_files(ROOT)}
    assert {"pyproject.toml", "README.md", "LICENSE", "operator/chute_operator/cli.py"} <= files
    assert "operator/chute_modelsim/server.py" in files
    assert not any(path.startswith(("tests/", "docs/", ".git", ".venv")) for path in files)
    assert not any("__pycache__" in path or ".egg-info" in path for path in files)
    assert not any(path.startswith("operator/chute_devcluster/") for path in files)  # not in the product


def test_a_code_change_changes_the_tag_and_bytecode_does_not(tmp_path: Path) -> None:
    repo = _context_copy(tmp_path)
    before = project_image_of(repo, BASE)
    cache = repo / "operator" / "chute_operator" / "__pycache__"
    cache.mkdir()
    (cache / "cli.cpython-311.pyc").write_bytes(b"\0")
    assert project_image_of(repo, BASE) == before
    with (repo / "operator" / "chute_operator" / "cli.py").open("a") as source:
        source.write("# changed\n")
    after = project_image_of(repo, BASE)
    assert after.ref != before.ref
    assert after.tar != before.tar
    assert after.ref.startswith("localhost/chute-operator:0.1.0-")
    other_base = Image("localhost/chute-operator-base:bookworm-1", Path("/nonexistent"), "1")
    assert project_image_of(repo, other_base).ref != after.ref


def test_host_suite(tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert host_suite(os_release) == "bookworm"


def test_host_debian_sources_keeps_only_the_suite(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb http://mirror.example/debian bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg] https://vendor.example/apt stable main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.internal/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example.internal/debian-security\nSuites: bookworm-security\n"
        "Components: main\n"
    )
    (tmp_path / "sources.list.d" / "vendor.sources").write_text(
        "Types: deb\nURIs: https://vendor.example/apt\nSuites: cloud-sdk-bookworm nodistro\n"
        "Components: main\n"
    )
    assert host_debian_sources("bookworm", tmp_path) == [
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://mirror.example.internal/debian bookworm main",
        "deb http://mirror.example.internal/debian bookworm-updates main",
        "deb http://mirror.example.internal/debian-security bookworm-security main",
    ]
