"""Run ``chute-operator`` with its memory watched (used by benchmarks/operator_restart_memory.py).

    MEMPROBE_DIR=/some/dir [MEMPROBE_TRACEMALLOC=12] python benchmarks/memprobe.py run --all-namespaces

With MEMPROBE_KOPF_IDLE_TIMEOUT=<seconds>, kopf's per-object workers exit after that long idle
(kopf's default: 5 s; each holds its object's last event, as it came from the API, until it exits).

Writes into MEMPROBE_DIR:
- ``timeline.jsonl``: every 0.25 s the process's RSS (and tracemalloc's traced total when tracing);
- ``events.jsonl``: when the operator's cache sync and each of kopf's initial listings start and end,
  with the RSS then (kopf's listing of a kind: its first page requested to its last object handed on);
- ``peak.json`` (when tracing): the top allocations by traceback at the highest traced total seen;
- ``<label>.json`` for each ``do-<nn>-<action>-<label>`` file that appears in MEMPROBE_DIR, where
  action is ``report`` (RSS, glibc's mallinfo2, CPython's pymalloc arenas, asyncio tasks, and the top
  allocations when tracing) or ``trim`` (the same after ``gc.collect()`` and then after
  ``malloc_trim(0)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

OUT = Path(os.environ["MEMPROBE_DIR"])
FRAMES = int(os.environ.get("MEMPROBE_TRACEMALLOC", "0"))
STARTED = time.monotonic()
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
libc = ctypes.CDLL("libc.so.6")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


libc.mallinfo2.restype = MallInfo2


def _now() -> float:
    return round(time.monotonic() - STARTED, 2)


def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[name] = round(int(value.split()[0]) / 1024, 1)
    return out


def _append(name: str, record: dict[str, Any]) -> None:
    with _lock, (OUT / name).open("a") as f:
        f.write(json.dumps(record) + "\n")


def event(what: str, **extra: Any) -> None:
    record = {"t": _now(), "event": what, **_status(), **extra}
    if FRAMES:
        record["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    _append("events.jsonl", record)


def _mallinfo() -> dict[str, float]:
    info = libc.mallinfo2()
    return {
        name: round(getattr(info, name) / 2**20, 1) for name in ("arena", "hblkhd", "uordblks", "fordblks")
    }


def _pymalloc() -> dict[str, float]:
    """CPython's own allocator (objects up to 512 bytes), from sys._debugmallocstats()."""
    with tempfile.TemporaryFile("w+") as tmp:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    out: dict[str, float] = {}
    for key, pattern in {
        "arenas_current": r"# arenas allocated current\s*=\s*([\d,]+)",
        "arenas_highwater": r"# arenas highwater mark\s*=\s*([\d,]+)",
        "bytes_in_arenas": r"(\d[\d,]*) arenas \* \d+ bytes/arena\s*=\s*([\d,]+)",
        "allocated_blocks": r"# bytes in allocated blocks\s*=\s*([\d,]+)",
        "available_blocks": r"# bytes in available blocks\s*=\s*([\d,]+)",
        "free_pools": r"(\d+) unused pools \* \d+ bytes\s*=\s*([\d,]+)",
    }.items():
        match = re.search(pattern, text)
        if match:
            value = int(match.groups()[-1].replace(",", ""))
            out[key] = value if key.startswith("arenas") else round(value / 2**20, 1)
    return out


def _top(snapshot: tracemalloc.Snapshot) -> dict[str, Any]:
    total = sum(s.size for s in snapshot.statistics("filename"))
    by_line = [
        {"mb": round(s.size / 2**20, 2), "count": s.count, "where": str(s.traceback[0])}
        for s in snapshot.statistics("lineno")[:25]
    ]
    # Each allocation charged to the innermost frame of the operator, kopf or an HTTP client (the
    # innermost frame alone is json's decoder or asyncio for most of them).
    owners: dict[str, list[int]] = {}
    for trace in snapshot.traces:
        frames = list(trace.traceback)  # oldest first
        where = str(frames[-1])
        for frame in reversed(frames):
            if any(
                p in frame.filename for p in ("chute_operator", "/kopf/", "/aiohttp/", "/httpx/", "lightkube")
            ):
                where = str(frame)
                break
        owners.setdefault(where, [0, 0])
        owners[where][0] += trace.size
        owners[where][1] += 1
    by_owner = [
        {"mb": round(size / 2**20, 2), "count": count, "where": where}
        for where, (size, count) in sorted(owners.items(), key=lambda kv: -kv[1][0])[:25]
    ]
    by_traceback = [
        {
            "mb": round(s.size / 2**20, 2),
            "count": s.count,
            "traceback": [str(f) for f in s.traceback][-FRAMES:],
        }
        for s in snapshot.statistics("traceback")[:12]
    ]
    return {
        "snapshot_total_mb": round(total / 2**20, 1),
        "by_line": by_line,
        "by_owner": by_owner,
        "by_traceback": by_traceback,
    }


def report(label: str, trim: bool = False) -> None:
    record: dict[str, Any] = {"t": _now(), "label": label, **_status(), "mallinfo2_mb": _mallinfo()}
    record["pymalloc"] = _pymalloc()
    if _loop is not None:
        with contextlib.suppress(RuntimeError):  # the loop's set of tasks changed meanwhile
            record["asyncio_tasks"] = len(asyncio.all_tasks(_loop))
    if FRAMES:
        current, peak = tracemalloc.get_traced_memory()
        record["traced_mb"], record["traced_peak_mb"] = round(current / 2**20, 1), round(peak / 2**20, 1)
        record["top"] = _top(tracemalloc.take_snapshot())
    if trim:
        gc.collect()
        record["after_gc_collect"] = {**_status(), "mallinfo2_mb": _mallinfo(), "pymalloc": _pymalloc()}
        libc.malloc_trim(0)
        record["after_malloc_trim"] = {**_status(), "mallinfo2_mb": _mallinfo()}
    (OUT / f"{label}.json").write_text(json.dumps(record, indent=1) + "\n")


def _watch() -> None:
    """Sample RSS; run the commands the benchmark drops in OUT; snapshot at each new traced high."""
    last_peak_snapshot = 0
    next_sample = 0.0
    while True:
        if time.monotonic() >= next_sample:
            record = {"t": _now(), **_status()}
            if FRAMES:
                current = tracemalloc.get_traced_memory()[0]
                record["traced_mb"] = round(current / 2**20, 1)
                if current > 60 * 2**20 and current > 1.25 * last_peak_snapshot:
                    last_peak_snapshot = current
                    snapshot = tracemalloc.take_snapshot()
                    top = {"t": _now(), **_status(), "traced_mb": round(current / 2**20, 1), **_top(snapshot)}
                    del snapshot
                    (OUT / "peak.json").write_text(json.dumps(top, indent=1) + "\n")
            _append("timeline.jsonl", record)
            next_sample = time.monotonic() + 0.25
        for command in sorted(OUT.glob("do-*")):
            _, _, action, label = command.name.split("-", 3)
            report(label, trim=action == "trim")
            command.rename(command.with_name("done" + command.name[2:]))
        time.sleep(0.05)


def _instrument() -> None:
    import kopf._cogs.clients.fetching as fetching

    from chute_operator.controller import Controller

    original_sync = Controller.sync

    async def sync(self: Controller) -> None:
        global _loop
        _loop = asyncio.get_running_loop()
        event("cache_sync_start")
        await original_sync(self)
        event("cache_sync_end", chutes=len(self.store.keys("Chute")))

    Controller.sync = sync  # type: ignore[method-assign]
    original_fetch = fetching.fetch_objs

    async def fetch_objs(**kwargs: Any) -> Any:
        resource = str(kwargs.get("resource"))
        event("kopf_listing_start", resource=resource)
        count = 0
        async for chunk, version in original_fetch(**kwargs):
            count += len(chunk)
            yield chunk, version
        event("kopf_listing_end", resource=resource, objects=count)

    fetching.fetch_objs = fetch_objs  # type: ignore[assignment]
    idle = os.environ.get("MEMPROBE_KOPF_IDLE_TIMEOUT")
    if idle:  # kopf's per-object workers (each holding its object's last event) exit sooner
        import kopf._core.reactor.queueing as queueing

        original_worker = queueing.worker

        async def worker(**kwargs: Any) -> None:
            kwargs["settings"].queueing.idle_timeout = float(idle)
            await original_worker(**kwargs)

        queueing.worker = worker  # type: ignore[assignment]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if FRAMES:
        tracemalloc.start(FRAMES)
    _instrument()
    event("start")
    threading.Thread(target=_watch, name="memprobe", daemon=True).start()
    from chute_operator.cli import main as cli_main

    sys.argv = ["chute-operator", *sys.argv[1:]]
    sys.exit(cli_main())


if __name__ == "__main__":
    main()
