"""The Gateway API's CRDs (standard channel) and the inference extension's InferencePool CRD, for
``spec.expose``: read from their Go modules as the Go module proxy serves them (``GOPROXY`` as the
environment sets it), copied once into the cache beside the binaries, applied with kubectl.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster.binaries import BuildError, _go_binary, cache_dir

GATEWAY_API = ("sigs.k8s.io/gateway-api", "v1.6.3", "config/crd/standard")
"""The Gateway API module, its version and the folder of its standard channel's CRDs."""
INFERENCE_EXTENSION = (
    "sigs.k8s.io/gateway-api-inference-extension",
    "v1.6.2",
    "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
)
"""The inference extension's module, its version and its InferencePool CRD (``v1``)."""
NAMES = (
    "httproutes.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "gatewayclasses.gateway.networking.k8s.io",
    "inferencepools.inference.networking.k8s.io",
)
"""The CRDs ``spec.expose`` needs (waited for until Established), among those installed."""


def _module_dir(module: str, version: str) -> Path:
    """The module's files, downloaded into Go's module cache through the Go module proxy."""
    done = subprocess.run(
        [_go_binary(), "mod", "download", "-json", f"{module}@{version}"], cwd=cache_dir(), check=False,
        capture_output=True, text=True, env={**os.environ, "GOFLAGS": "-mod=mod"},
    )  # fmt: skip
    if done.returncode != 0:
        answer = f"{done.stdout[-500:]}{done.stderr[-500:]}"
        raise BuildError(f"go mod download {module}@{version} failed: {answer}")
    return Path(json.loads(done.stdout)["Dir"])


def _is_crd(path: Path) -> bool:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return bool(documents) and all(d.get("kind") == "CustomResourceDefinition" for d in documents)


def _cached(module: str, version: str, inside: str) -> list[Path]:
    """The CRD files of ``inside`` (a file or a folder) of a module, cached under ``crds/``."""
    final = cache_dir() / "crds" / f"{module.rsplit('/', 1)[-1]}-{version}"
    if not final.is_dir():
        source = _module_dir(module, version) / inside
        files = sorted(source.glob("*.yaml")) if source.is_dir() else [source]
        staging = final.with_name(final.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in files:
            if _is_crd(path):  # the standard channel also has a ValidatingAdmissionPolicy: not a CRD
                (staging / path.name).write_text(path.read_text())
        staging.rename(final)
    return sorted(final.glob("*.yaml"))


def ensure_gateway_crds() -> list[Path]:
    """The Gateway API's standard CRDs and the InferencePool CRD, cached (downloaded the first time)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    return [*_cached(*GATEWAY_API), *_cached(*INFERENCE_EXTENSION)]


def install_gateway_crds(kubectl: Callable[..., Any]) -> list[Path]:
    """Apply them (server-side) with ``kubectl`` (a control plane's) and wait until they are served."""
    files = ensure_gateway_crds()
    for path in files:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{name}" for name in NAMES))
    return files
