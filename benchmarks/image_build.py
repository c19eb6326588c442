"""Build times and sizes of the images `chute-operator dev build` makes (no registry), from a clean cache.

    .venv/bin/python benchmarks/image_build.py [--driver overlay --driver vfs] [--rebuilds 3]

For each buildah storage driver, in a fresh cache directory (``CHUTE_OPERATOR_CACHE``) and on a copy of
the build context: the first build (Debian rootfs with mmdebstrap, pause, project image), a second call
with nothing changed (cache hit), then ``--rebuilds`` rebuilds, each after a one-line change to a module
(what the test suite meets after every code change). Writes ``benchmarks/results/image_build.json``
(the figures of a driver not measured in this run are kept).
The machine's load average is recorded beside the times: other work on the machine slows the builds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from chute_devcluster import images

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "image_build.json"
CHANGED_MODULE = Path("operator/chute_operator/render.py")


def context_copy(directory: Path) -> Path:
    copy = directory / "context"
    copy.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "operator", copy / "operator", ignore=ignored)
    return copy


def timed(action: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


def last_layer_bytes(tar: Path) -> int:
    with tarfile.open(tar) as archive:
        manifest_file = archive.extractfile("manifest.json")
        assert manifest_file is not None
        layers = json.load(manifest_file)[0]["Layers"]
        return archive.getmember(layers[-1]).size


def disk_bytes(path: Path) -> int:
    result = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[0])


def measure(driver: str, rebuilds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="image-bench-") as scratch:
        directory = Path(scratch)
        os.environ["CHUTE_OPERATOR_CACHE"] = str(directory / "cache")
        os.environ[images.STORAGE_DRIVER_ENV] = driver
        context = context_copy(directory)
        load_before = os.getloadavg()[0]
        first_seconds, built = timed(lambda: images.ensure_images(context))
        cached_seconds, again = timed(lambda: images.ensure_images(context))
        assert again == built
        rebuild_seconds = []
        for number in range(rebuilds):
            with (context / CHANGED_MODULE).open("a") as module:
                module.write(f"# benchmark change {number}\n")
            seconds, rebuilt = timed(lambda: images.ensure_images(context))
            assert rebuilt.project.ref != built.project.ref
            rebuild_seconds.append(seconds)
        project = rebuilt.project if rebuilds else built.project
        result = {
            "first_build_seconds": round(first_seconds, 1),
            "cached_call_seconds": round(cached_seconds, 2),
            "rebuild_after_code_change_seconds": [round(value, 1) for value in rebuild_seconds],
            "rebuild_median_seconds": round(statistics.median(rebuild_seconds), 1) if rebuilds else None,
            "tar_bytes": {
                "base": built.base.tar.stat().st_size,
                "pause": built.pause.tar.stat().st_size,
                "project": project.tar.stat().st_size,
            },
            "project_last_layer_bytes": last_layer_bytes(project.tar),
            "buildah_storage_bytes_after": disk_bytes(directory / "cache" / "images" / f"storage-{driver}"),
            "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        subprocess.run(images.buildah_command("rm", "--all"), capture_output=True, check=False)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    drivers = ["overlay", "vfs"]
    parser.add_argument("--driver", action="append", choices=drivers, help="repeat (default overlay)")
    parser.add_argument("--rebuilds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "suite": images.host_suite()},
        "buildah": subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.strip(),
        "drivers": previous.get("drivers", {}),  # a run of one driver keeps the other's figures
    }
    for driver in args.driver or ["overlay"]:
        print(f"[bench] {driver}: first build, cached call, {args.rebuilds} rebuilds", file=sys.stderr)
        results["drivers"][driver] = measure(driver, args.rebuilds)
        print(json.dumps(results["drivers"][driver], indent=2), file=sys.stderr)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
