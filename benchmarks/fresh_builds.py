"""What a fresh machine pays for the binaries added after the control plane's first-build measurement
(docs/control-plane.md: 697 s for etcd, kwok and Kubernetes): helm, the registry and the device
plugin, each built alone from empty Go caches (a temporary module and build cache, and a temporary
``CHUTE_OPERATOR_CACHE``: the machine's caches are neither used nor touched). Modules come from the
Go module proxy. Writes ``benchmarks/results/fresh-builds.json``.

    .venv/bin/python benchmarks/fresh_builds.py

With ``--whole``: every binary the local cluster and the demo need (``ensure_binaries``: etcd, kwok,
helm, Kubernetes, the node's kubelet and kube-proxy, the device plugin, the registry, the
NetworkPolicy enforcer), in the order and from the one set of empty Go caches a fresh machine builds
them with; writes ``benchmarks/results/fresh-binaries.json``.

    .venv/bin/python benchmarks/fresh_builds.py --whole
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "fresh-builds.json"
WHOLE_RESULTS = Path(__file__).resolve().parent / "results" / "fresh-binaries.json"


def _timed(build: Callable[[], None]) -> float:
    started = time.monotonic()
    build()
    return round(time.monotonic() - started, 1)


def whole() -> int:
    """Every binary, as a fresh machine builds them: one set of empty caches, ensure_binaries' order."""
    with tempfile.TemporaryDirectory(prefix="chute-fresh-binaries-") as scratch:
        root = Path(scratch)
        os.environ.update(
            {
                "CHUTE_OPERATOR_CACHE": str(root / "cache"),
                "GOCACHE": str(root / "gocache"),
                "GOMODCACHE": str(root / "gomod"),
            }
        )
        from chute_devcluster import binaries

        load_before = os.getloadavg()[0]
        seconds = _timed(binaries.ensure_binaries)
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": ".venv/bin/python benchmarks/fresh_builds.py --whole",
            "cpus": os.cpu_count(),
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "built": [path.name for path in binaries.toolset().__dict__.values() if isinstance(path, Path)],
            "total_seconds": seconds,
        }
        _writable(root / "gomod")
    WHOLE_RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def main() -> int:
    if "--whole" in sys.argv[1:]:
        return whole()
    with tempfile.TemporaryDirectory(prefix="chute-fresh-builds-") as scratch:
        root = Path(scratch)
        seconds: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        for name in ("helm", "registry", "gpu_device_plugin"):
            for sub in ("cache", "gocache", "gomod"):  # empty caches for each build
                shutil.rmtree(root / sub, ignore_errors=True)
            os.environ.update(
                {
                    "CHUTE_OPERATOR_CACHE": str(root / "cache"),
                    "GOCACHE": str(root / "gocache"),
                    "GOMODCACHE": str(root / "gomod"),
                }
            )
            from chute_devcluster import binaries

            build = {
                "helm": binaries.build_helm,
                "registry": binaries.build_registry,
                "gpu_device_plugin": binaries.build_device_plugin,
            }[name]
            seconds[name] = _timed(build)
            print(f"{name}: {seconds[name]} s from empty Go caches", flush=True)
            _writable(root / "gomod")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ".venv/bin/python benchmarks/fresh_builds.py",
        "cpus": os.cpu_count(),
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "seconds_from_empty_go_caches": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def _writable(modcache: Path) -> None:
    """Go writes its module cache read-only: make it writable so the next build's removal works."""
    for path in modcache.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


if __name__ == "__main__":
    sys.exit(main())
