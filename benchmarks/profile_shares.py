"""Where a profiled operator's time went: shares of a py-spy profile's samples, per function.

    .venv/bin/python benchmarks/profile_shares.py [benchmarks/results/operator-1000-profile.txt.gz]

The profile is py-spy's raw (collapsed stacks) output, taken from the operator of a running
``benchmarks/operator_scale.py`` while its Chutes come up:

    .venv/bin/python benchmarks/operator_scale.py --chutes 1000 --no-floor &
    py-spy record -p $(pgrep -f "chute_operator run") --duration 110 --rate 50 --nonblocking \\
        --format raw -o profile.txt

A function's share is the fraction of samples with it anywhere on the stack (its callees included).
py-spy samples threads that are not idle, so on a saturated machine a share is of the time the
operator wanted the CPU, not only of the time it had it. Prints a Markdown table.
"""

from __future__ import annotations

import gzip
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "benchmarks" / "results" / "operator-1000-profile.txt.gz"

ROWS: tuple[tuple[str, str], ...] = (
    ("Controller._work", "the operator's reconcile workers, all of it"),
    ("GenericAsyncClient.request", "  its API calls through lightkube and httpx (HTTP/1.1 in Python, TLS)"),
    ("KubeApi._call", "  its API calls through the operator's transport (aiohttp; JSON both ways)"),
    ("Reconciler._write_status", "  status patches (their HTTP included)"),
    ("Actor.write_status", "  status patches (their HTTP included)"),
    ("DesiredManifests.of", "  rendering the children (hash stamps; jinja2 and libyaml until 2026-12-07)"),
    ("Reconciler._ours_or_none", "  the GET of a child not yet in the store (HTTP included)"),
    ("Observer._look_up", "  the GET of a child not yet in the store (HTTP included)"),
    ("Reconciler._event", "  Events (HTTP included)"),
    ("Actor.event", "  Events (HTTP included)"),
    ("worker (", "kopf's per-object workers: every watch event of every watched kind"),
    ("DiffBaseStorage.build", "  kopf building each object's essence for change handlers (none exist)"),
    ("ProgressStorage.clear", "  kopf clearing progress marks from that essence"),
    ("stream (", "kopf's watch streams: reading and decoding the events (json)"),
    ("Informer._watch", "the operator's informers (since 2026-12-08): watch events read, decoded, stored"),
    ("loads (json/", "the standard library's json decoding, wherever it runs"),
    ("Controller.relist", "the operator's cache sync (a paged LIST of each kind), all of it"),
    ("SharedStrings.copy", "the store sharing strings among its objects (listings and watch events)"),
    ("generate_latest", "answering a scrape of /metrics"),
)


def shares(lines: list[str]) -> tuple[int, Counter[str]]:
    total, found = 0, Counter[str]()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        for prefix, _ in ROWS:
            if any(frame.startswith(prefix) for frame in stack.split(";")):
                found[prefix] += samples
    return total, found


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as profile:
        total, found = shares(profile.readlines())
    print(f"| where (`{path.name}`, {total} samples) | share of the operator's samples |")
    print("| --- | ---: |")
    for prefix, what in ROWS:
        if not found[prefix] and what.startswith("  "):
            continue  # code this profile's operator did not have (or never ran)
        label = what.replace("  ", "- ", 1) if what.startswith("  ") else what
        print(f"| {label} | {found[prefix] / total:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
