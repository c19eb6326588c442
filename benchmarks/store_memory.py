"""Memory of the operator's store holding N Chutes' Deployments and Pods, offline, before and after
store.slim keeps only what the store's readers use.

The objects are a benchmark Chute's Deployment and Pod as the API server and kwok made them, with
their managedFields (tests/data/store/bench-children.json), given N names and uids, and read as the
operator reads a listing: JSON pages of 250, each object slimmed as its page arrives, then put in the
store. "before" is the slimming of commit 3cb4aaf (managedFields dropped, a Deployment's Apply entries
kept whole); "after" is store.slim. Each mode runs in its own process: tracemalloc's count of the
bytes the store holds, and the process's RSS growth (VmRSS, and VmHWM for the peak) over filling it.

Run: .venv/bin/python benchmarks/store_memory.py [--chutes 1000]
Writes benchmarks/results/store-memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = ROOT / "tests" / "data" / "store" / "bench-children.json"
PAGE = 250


def slim_before(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """store.slim as of commit 3cb4aaf."""
    metadata = obj.get("metadata")
    if not metadata or "managedFields" not in metadata:
        return obj
    kept = [entry for entry in metadata["managedFields"] or [] if entry.get("operation") == "Apply"]
    slimmed = {k: v for k, v in metadata.items() if k != "managedFields"}
    if kind == "Deployment" and kept:
        slimmed["managedFields"] = kept
    return {**obj, "metadata": slimmed}


def _status_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


def _page(template: dict[str, Any], start: int, count: int) -> str:
    """A JSON page of ``count`` copies of ``template``, each with its own name, uid and labels."""
    text = json.dumps(template)
    chute = template["metadata"]["labels"]["chutes.ai/chute"]  # in the name, labels and selector
    uid = template["metadata"]["uid"]
    items = [
        text.replace(chute, f"bench-{i:04d}").replace(uid, f"{uid[:-8]}{i:08d}")
        for i in range(start, start + count)
    ]
    return '{"items": [' + ",".join(items) + "]}"


def measure(mode: str, chutes: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "operator"))
    from chute_operator import store as module

    slimmer = module.slim if mode == "after" else slim_before
    module.slim = slimmer  # type: ignore[assignment]  # what Store.put applies too
    captured = json.loads(OBJECTS.read_text())
    pages = {
        kind: [_page(captured[kind], s, min(PAGE, chutes - s)) for s in range(0, chutes, PAGE)]
        for kind in captured
    }
    store = module.Store()
    rss_before, hwm_before = _status_kb("VmRSS"), _status_kb("VmHWM")
    tracemalloc.start()
    started = time.perf_counter()
    by_kind: dict[str, int] = {}
    for kind, texts in pages.items():
        before = tracemalloc.get_traced_memory()[0]
        for text in texts:
            page = json.loads(text)
            listed = [slimmer(kind, item) for item in page["items"]]
            del page
            for obj in listed:
                store.put(kind, obj)
            del listed
        by_kind[kind] = round((tracemalloc.get_traced_memory()[0] - before) / chutes)
    seconds = time.perf_counter() - started
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(store.keys("Pod")) == len(store.keys("Deployment")) == chutes
    return {
        "mode": mode,
        "chutes": chutes,
        "store_bytes_per_chute": round(held / chutes),
        "store_bytes_per_object": by_kind,
        "store_mb": round(held / 2**20, 1),
        "tracemalloc_peak_mb": round(peak / 2**20, 1),
        "rss_growth_mb": round((_status_kb("VmRSS") - rss_before) / 1024, 1),
        "peak_rss_growth_mb": round((_status_kb("VmHWM") - hwm_before) / 1024, 1),
        "fill_seconds": round(seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chutes", type=int, default=1000)
    parser.add_argument("--mode", choices=("before", "after"), help="one mode in this process (internal)")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.chutes)))
        return 0
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, __file__, "--chutes", str(args.chutes), "--mode", mode],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for mode in ("before", "after")
    ]
    results = {
        "chutes": args.chutes,
        "objects": str(OBJECTS.relative_to(ROOT)),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
    }
    out = ROOT / "benchmarks" / "results" / "store-memory.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
