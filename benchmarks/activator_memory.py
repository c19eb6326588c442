"""The activator's memory per sleeping Chute: its cluster source's caches and the holder's state.

    .venv/bin/python benchmarks/activator_memory.py [--chutes 4500]

No cluster: the activator's cluster source (``chute_activator.kube.KubeSource``, no client) is fed
``--chutes`` copies of a Chute at zero and its EndpointSlice as the fleet benchmark's API server sent
them (tests/data/activator/fleet-objects.json), each decoded from JSON on its own as a watch event is,
through the same handler a watch event goes through. Two variants, each in a process of its own:
``full`` stores each object as it arrived (the activator before chute_activator.slim), ``slim`` stores
what the activator keeps of it now. Measured: the process's RSS before and after the fill, and, in
another process, the bytes tracemalloc traces to it. Writes benchmarks/results/activator-memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.operator_scale import _proc  # noqa: E402

CAPTURED = ROOT / "tests" / "data" / "activator" / "fleet-objects.json"
VARIANTS = ("full", "slim")


def _renamed(text: str, old: str, new: str) -> Any:
    return json.loads(text.replace(f'"{old}', f'"{new}'))


async def _fill(variant: str, chutes: int, trace: bool) -> dict[str, float]:
    import os

    from lightkube.resources.discovery_v1 import EndpointSlice

    from chute_activator import kube
    from chute_activator.holding import Holder
    from chute_activator.metrics import Metrics

    async def wake(_: Any) -> None:
        pass

    captured = json.loads(CAPTURED.read_text())["asleep"]
    name = captured["chute"]["metadata"]["name"]
    chute_text = json.dumps(captured["chute"])
    slice_texts = [json.dumps(s) for s in captured["slices"]]
    source = kube.KubeSource(None, Holder(wake, Metrics()), ("fleet",))  # type: ignore[arg-type]
    gc.collect()
    before = _proc(os.getpid())["rss_mb"]
    if trace:
        tracemalloc.start()
    for index in range(chutes):
        new = f"m{index:05d}"
        objects: list[tuple[Any, Any]] = [(kube.ChuteResource, _renamed(chute_text, name, new))]
        objects += [(EndpointSlice, _renamed(text, name, new)) for text in slice_texts]
        for resource, obj in objects:
            kept = obj if variant == "full" else kube._kept(resource, obj)
            source._event(resource, "ADDED", kept)
    gc.collect()
    after = _proc(os.getpid())["rss_mb"]
    assert len(source.chutes) == chutes
    assert len(source.holder.known()) == chutes
    if not trace:
        return {"rss_mb_before": round(before, 1), "rss_mb_after": round(after, 1)}
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"traced_mb": round(traced / 2**20, 1), "traced_kb_per_chute": round(traced / 1024 / chutes, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chutes", type=int, default=4500)
    parser.add_argument("--variant", choices=VARIANTS, help="measure one variant in this process")
    parser.add_argument("--trace", action="store_true", help="with --variant: tracemalloc's bytes, not RSS")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(asyncio.run(_fill(args.variant, args.chutes, args.trace))))
        return 0
    captured = json.loads(CAPTURED.read_text())["asleep"]
    results: dict[str, Any] = {
        "chutes": args.chutes,
        "machine": f"{platform.machine()}, 2 cores",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "captured_chute_json_bytes": len(json.dumps(captured["chute"])),
        "captured_slices_json_bytes": sum(len(json.dumps(s)) for s in captured["slices"]),
    }
    for variant in VARIANTS:
        results[variant] = {}
        for trace in ([], ["--trace"]):  # RSS without tracemalloc's own memory, then the traced bytes
            run = [sys.executable, __file__, "--variant", variant, "--chutes", str(args.chutes), *trace]
            answer = subprocess.run(run, check=True, capture_output=True, text=True).stdout
            results[variant].update(json.loads(answer))
        print(variant, results[variant], flush=True)
    out = ROOT / "benchmarks" / "results" / "activator-memory.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
