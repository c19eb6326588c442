"""What kube-apiserver spent its CPU on: a Go CPU profile (pprof) sorted into kinds of work.

    .venv/bin/python benchmarks/apiserver_profile.py benchmarks/results/NAME-apiserver-PHASE.pprof ...
    .venv/bin/python benchmarks/apiserver_profile.py --update benchmarks/results/NAME.json

``benchmarks/operator_scale.py --apiserver-profile`` takes the profiles (one per phase) and
records these shares in its results file; ``--update`` sorts a results file's saved profiles again
(after a change to the kinds below). Each sample's stack goes to the first kind of work below
that one of its frames names. The API server serves a request in several goroutines (the filters and
the handler in one, the write to etcd in another, each watcher's events in a third), so a kind is
the work of those goroutines, not of whole requests: the writes' rows hold the storage side of
creates, updates and patches (their admission, field management, validation, etcd), the filters' row
the authentication, authorization and priority and fairness of every request. The Chutes' rows hold
only what names them (their status subresource, their strategy and schema), not the field management
and etcd work that any kind's write shares; a Chute's reads and watches are in the reads' and
watches' rows. A profile of ``operator_scale.py`` misses the moments between its 5 s slices (about
5% of a phase) and holds up to 5 s after the phase. The Go toolchain reads the profile (``go tool
pprof -traces``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

WORK: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "garbage collection (in the background)",
        ("runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"),
    ),
    (
        "serving watches (events to each watcher)",
        ("(*WatchServer)", "(*cacheWatcher)", "(*Cacher).dispatchEvent"),
    ),
    ("GETs", ("handlers.GetResource", "handlers.getResourceHandler")),
    ("LISTs", ("handlers.ListResource",)),
    (
        "the watch cache (etcd's events decoded)",
        ("etcd3.(*watchChan)", "(*watchCache)", "(*Cacher).processEvent"),
    ),
    (
        "Chute status patches: their storage",
        ("customresource.(*StatusREST)", "customresource.statusStrategy"),
    ),
    (
        "Chute writes: their validation (schema, CEL rules)",
        ("apiextensions-apiserver/pkg/apiserver/schema", "customresource.customResourceStrategy"),
    ),
    ("patches (server-side applies, merge patches)", ("handlers.PatchResource", "(*patcher)")),
    ("creates (Events, pods, bindings, ...)", ("createHandler", "handlers.CreateResource")),
    ("updates (the controllers' status writes)", ("handlers.UpdateResource",)),
    ("deletes", ("handlers.DeleteResource", "handlers.DeleteCollection")),
    ("discovery and OpenAPI", ("endpoints/discovery", "kube-openapi/pkg/handler")),
    (
        "request filters (authentication, authorization, priority and fairness)",
        ("apiserver/pkg/endpoints/filters", "apiserver/pkg/server/filters"),
    ),
    ("HTTP/2 and TLS", ("net/http.", "golang.org/x/net/http2", "crypto/tls")),
    ("the etcd client", ("go.etcd.io/", "google.golang.org/grpc")),
)
"""Kinds of work, in the order a stack is matched against them; a stack none names is "other"."""
OTHER = "other"
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_SAMPLE = re.compile(r"\s*([\d.]+)(ns|us|µs|ms|s)\s+(\S.*)")
_TOTAL = re.compile(r"Total samples = ([\d.]+)(ns|us|µs|ms|s)")


def go_tool() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise SystemExit("the Go toolchain is needed to read a pprof profile")
    return go


def kind_of(frames: list[str]) -> str:
    """The kind of work a sample's stack (leaf first) did."""
    for kind, names in WORK:
        if any(name in frame for frame in frames for name in names):
            return kind
    return OTHER


def parse_traces(text: str) -> list[tuple[float, list[str]]]:
    """``go tool pprof -traces`` output as (seconds, frames leaf first) per distinct stack."""
    samples = []
    for block in text.split("-----------+-------------------------------------------------------")[1:]:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        found = _SAMPLE.match(lines[0]) if lines else None
        if found:
            seconds = float(found.group(1)) * _UNITS[found.group(2)]
            samples.append((seconds, [found.group(3), *lines[1:]]))
    return samples


def shares(profile: Path) -> dict[str, float]:
    """CPU seconds per kind of work in a profile, the largest first, with the total under "total"."""
    traces = subprocess.run(
        [go_tool(), "tool", "pprof", "-traces", str(profile)], capture_output=True, text=True, check=True
    ).stdout
    seconds: dict[str, float] = {}
    samples = parse_traces(traces)
    header = _TOTAL.search(traces)
    if header:
        total = float(header.group(1)) * _UNITS[header.group(2)]
        read = sum(spent for spent, _ in samples)
        if abs(read - total) > 0.02 * total + 0.05:
            raise ValueError(f"{profile}: read {read:.2f} s of the profile's {total:.2f} s")
    for spent, frames in samples:
        kind = kind_of(frames)
        seconds[kind] = seconds.get(kind, 0.0) + spent
    ordered = dict(sorted(((k, round(v, 2)) for k, v in seconds.items()), key=lambda kv: -kv[1]))
    return {"total": round(sum(seconds.values()), 2), **ordered}


def table(phases: dict[str, dict[str, float]]) -> str:
    """A Markdown table: a row per kind of work, a column of seconds (and share) per phase."""
    names = list(phases)
    rows = [
        "| kube-apiserver's CPU on | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for kind in [k for k, _ in WORK] + [OTHER]:
        cells = []
        for name in names:
            spent, total = phases[name].get(kind, 0.0), phases[name].get("total", 0.0)
            cells.append(f"{spent:.1f} s ({spent / total:.0%})" if total else "-")
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    rows.append("| all of it | " + " | ".join(f"{phases[n].get('total', 0.0):.1f} s" for n in names) + " |")
    return "\n".join(rows)


def update(results: Path) -> dict[str, dict[str, float]]:
    """Sort the profiles a results file names again (after a change to WORK), in place; the phases'
    seconds per kind of work."""
    run = json.loads(results.read_text())
    phases = {}
    for key, recorded in run.items():
        if key.endswith("_apiserver_cpu") and recorded.get("profile"):
            fresh = shares(results.parent / recorded["profile"])
            kept = {k: v for k, v in recorded.items() if k not in _SORTED}
            run[key] = {**kept, **fresh}
            phases[key.removesuffix("_apiserver_cpu")] = fresh
    results.write_text(json.dumps(run, indent=2) + "\n")
    return phases


_SORTED = {kind for kind, _ in WORK} | {OTHER, "total"}
"""The keys of a phase's ``_apiserver_cpu`` that :func:`shares` writes."""


def main() -> int:
    if sys.argv[1:2] == ["--update"] and len(sys.argv) == 3:
        print(table(update(Path(sys.argv[2]))))
        return 0
    paths = [Path(arg) for arg in sys.argv[1:]]
    if not paths:
        raise SystemExit(__doc__)
    print(table({path.stem: shares(path) for path in paths}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
