"""Progress of a download, from the bytes on the volume: a JSON line a second on stdout."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from chute_shared.weights import PROGRESS_DONE, PROGRESS_TOTAL


def bytes_under(folder: Path) -> int:
    """Bytes of the regular files below ``folder`` (the client's ``.incomplete`` files included;
    snapshots are symlinks to the blobs, so they are not counted twice)."""
    if not folder.is_dir():
        return 0
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:  # a file renamed from .incomplete meanwhile
            continue
    return total


def line(done: int, total: int) -> str:
    return json.dumps({PROGRESS_DONE: min(done, total) if total else done, PROGRESS_TOTAL: total})


class Reporter:
    """Prints ``line(done, total)`` every ``interval`` seconds until stopped, and once at the end."""

    def __init__(self, measure: Callable[[], int], total: int, out: TextIO, interval: float = 1.0) -> None:
        self.measure, self.total, self.out, self.interval = measure, total, out, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def _print(self) -> None:
        print(line(self.measure(), self.total), file=self.out, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._print()

    def __enter__(self) -> Reporter:
        self._print()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._print()
