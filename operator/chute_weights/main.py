"""``python -m chute_weights download``: the download Job's command.

Exit 0 when the revision is in the cache; else a termination message ``{"reason", "message"}`` (the
kubelet keeps it in the pod's status, where the operator reads it) and exit ``EXIT_PERMANENT`` when
retrying cannot help, ``EXIT_TRANSIENT`` otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from chute_shared.weights import EXIT_PERMANENT, EXIT_TRANSIENT
from chute_weights.download import download
from chute_weights.failure import classify

TOKEN_ENV = "HF_TOKEN"  # nosec B105  # the name of the variable, not a token


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chute_weights", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("download", help="download one revision of a model into a hub cache")
    run.add_argument("--repo", required=True, help="the model's repository, e.g. org/name")
    run.add_argument("--revision", required=True, help="the commit to download (40 hex characters)")
    run.add_argument("--cache", required=True, type=Path, help="the hub cache directory (HF_HUB_CACHE)")
    run.add_argument(
        "--termination-log",
        type=Path,
        default=Path("/dev/termination-log"),
        help="where a failure is written",
    )
    run.add_argument("--progress-seconds", type=float, default=1.0, help="seconds between progress lines")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    token = os.environ.get(TOKEN_ENV) or None
    try:
        path = download(args.repo, args.revision, args.cache, token, sys.stdout, args.progress_seconds)
    except Exception as error:  # every failure is reported, then the exit code tells the Job
        failure = classify(error)
        report = json.dumps({"reason": failure.reason, "message": failure.message})
        print(report, file=sys.stderr, flush=True)
        try:
            args.termination_log.write_text(report)
        except OSError as write_error:
            print(f"termination message not written: {write_error}", file=sys.stderr)
        return EXIT_PERMANENT if failure.permanent else EXIT_TRANSIENT
    print(json.dumps({"snapshot": str(path)}), flush=True)
    return 0
