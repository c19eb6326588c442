"""kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) run for real: the Go program in tests/kstatus.

Built once with the machine's Go toolchain into ``~/.cache/chute-operator/bin/kstatus-<hash>/``
(the hash covers the program's sources, so an edit rebuilds it); never committed as a binary.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.binaries import cache_dir

SOURCE = Path(__file__).resolve().parents[1] / "kstatus"
SOURCE_FILES = ("go.mod", "go.sum", "main.go")


class KstatusBuildError(RuntimeError):
    """The Go toolchain is missing or the build failed."""


@dataclass(frozen=True)
class Kstatus:
    """What kstatus computes for one object."""

    status: str
    """InProgress, Current, Failed, Terminating, NotFound or Unknown."""
    message: str


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCE_FILES:
        digest.update(name.encode() + b"\0" + (SOURCE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def binary_path() -> Path:
    return cache_dir() / "bin" / f"kstatus-{_source_hash()}" / "kstatus"


def ensure_kstatus() -> Path:
    """The built program, building it first if needed (once; concurrent callers wait on a lock)."""
    target = binary_path()
    if target.exists():
        return target
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise KstatusBuildError("the Go toolchain (go) is needed to build tests/kstatus")
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with (cache_dir() / "kstatus.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        partial = target.parent.with_name(target.parent.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
        build = ["build", "-p", "1", "-trimpath", "-ldflags", "-s -w", "-o", str(partial / "kstatus"), "."]
        result = subprocess.run([go, *build], cwd=SOURCE, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise KstatusBuildError(f"go build in {SOURCE} failed:\n{result.stderr}")
        partial.rename(target.parent)
    return target


def compute(binary: Path, obj: dict[str, Any]) -> Kstatus:
    """kstatus's status and message for ``obj`` (a whole object, as the API server returns it)."""
    result = subprocess.run(
        [str(binary)], input=json.dumps(obj), capture_output=True, text=True, timeout=30, check=True
    )
    out = json.loads(result.stdout)
    return Kstatus(out["status"], out["message"])


@pytest.fixture(scope="session")
def kstatus_binary() -> Path:
    """The kstatus program, built on first use (skipped without Go, failed in CI)."""
    try:
        return ensure_kstatus()
    except KstatusBuildError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(error), pytrace=False)
        pytest.skip(str(error))
