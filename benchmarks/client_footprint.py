"""What each Kubernetes and HTTP client costs a process just by being imported: memory and modules.

The operator talks to the API server through lightkube (leader election) and its own aiohttp
transport (every other call), not through the official ``kubernetes`` client or
``kubernetes_asyncio``; this measures the part of that choice that needs no cluster. Each client is
imported in a fresh interpreter (a virtualenv of its own under the cache directory, installed once
from PyPI), which then reports its peak RSS, the modules loaded and the import's wall time; the
median of ``--runs`` runs. The bare interpreter is the first row. CPU per API call, which needs a
cluster, is benchmarks/api_client.py's.

Run: .venv/bin/python benchmarks/client_footprint.py [--runs 5]
Writes benchmarks/results/client-footprint.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "client-footprint.json"
PACKAGES = ("kubernetes", "kubernetes_asyncio", "lightkube", "aiohttp", "httpx")
CLIENTS = {
    "python (nothing imported)": "pass",
    "kubernetes (official, sync)": "import kubernetes.client, kubernetes.config",
    "kubernetes_asyncio": "import kubernetes_asyncio.client, kubernetes_asyncio.config",
    "lightkube (over httpx)": "import lightkube; from lightkube.resources import core_v1, apps_v1",
    "httpx": "import httpx",
    "aiohttp": "import aiohttp",
}
PROBE = """
import resource, sys, time
started = time.perf_counter()
{statement}
seconds = time.perf_counter() - started
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(sys.modules), seconds)
"""


def _venv() -> Path:
    """A virtualenv with every client, made once (PyPI) under the project's cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chute-operator"
    venv = cache / "bench" / "clients-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PACKAGES],
            check=True,
        )
    return python


def _versions(python: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json; "
        f"print(json.dumps({{p: m.version(p) for p in {list(PACKAGES)!r}}}))"
    )
    versions: dict[str, str] = json.loads(subprocess.check_output([str(python), "-c", script], text=True))
    return versions


def measure(python: Path, statement: str, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        out = subprocess.check_output([str(python), "-c", PROBE.format(statement=statement)], text=True)
        rss_kb, modules, seconds = out.split()
        samples.append((int(rss_kb) / 1024, int(modules), float(seconds)))
    return {
        "rss_mb": round(statistics.median(s[0] for s in samples), 1),
        "modules": statistics.median(s[1] for s in samples),
        "import_seconds": round(statistics.median(s[2] for s in samples), 3),
    }


def table(results: dict[str, Any]) -> str:
    base = results["clients"]["python (nothing imported)"]
    lines = [
        "| imported | peak RSS | added to the bare interpreter | modules | import time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results["clients"].items():
        added = row["rss_mb"] - base["rss_mb"]
        lines.append(
            f"| {name} | {row['rss_mb']:.1f} MB | {added:+.1f} MB | {row['modules']:.0f} "
            f"| {row['import_seconds']:.2f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    python = _venv()
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "runs": args.runs,
        "versions": _versions(python),
        "clients": {name: measure(python, statement, args.runs) for name, statement in CLIENTS.items()},
    }
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
