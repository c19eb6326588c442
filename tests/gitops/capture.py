"""Regenerate tests/data/status_fixtures/: real Chutes in every state of docs/gitops.md's table.

Starts its own local control plane and operator, brings one Chute into each state of
``tests.gitops.states.STATES`` (the same scenarios the e2e test checks live) and writes each as
``<fixture>.json`` with the fields that vary from run to run (uid, resourceVersion, managedFields,
timestamps of metadata) removed. Run from the repository root::

    .venv/bin/python -m tests.gitops.capture            # rewrites every fixture
    .venv/bin/python -m tests.gitops.capture serving    # only these
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from chute_devcluster.binaries import ensure_binaries
from chute_devcluster.controlplane import ControlPlane
from tests.gitops.states import STATES, State
from tests.kube_helpers import eventually
from tests.operator_fixtures import ROOT, OperatorProcess

FIXTURES = ROOT / "tests" / "data" / "status_fixtures"
NAMESPACE = "gitops-fixtures"
VARYING_METADATA = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "namespace")


def cleaned(obj: dict[str, Any]) -> dict[str, Any]:
    """The Chute without what differs between two runs of the same scenario."""
    metadata = {k: v for k, v in obj["metadata"].items() if k not in VARYING_METADATA}
    annotations = {
        k: v
        for k, v in (metadata.pop("annotations", None) or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if annotations:
        metadata["annotations"] = annotations
    return {**obj, "metadata": metadata}


def _write(state: State, obj: dict[str, Any]) -> None:
    path = FIXTURES / f"{state.fixture}.json"
    path.write_text(json.dumps(cleaned(obj), indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}", flush=True)


def capture(selected: list[State]) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="chute-gitops-") as work,
        ControlPlane(work_dir=Path(work), tools=ensure_binaries()) as cp,
    ):
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        cp.kubectl("create", "namespace", NAMESPACE)
        operator = OperatorProcess(cp.kubeconfig, Path(work), "capture").start()
        try:
            live = [s for s in selected if not s.needs_operator_stopped]
            stopped = [s for s in selected if s.needs_operator_stopped]
            for state in live + [s for s in stopped if s.before is not None]:
                state.create(cp, NAMESPACE)
            for state in live:
                _write(state, state.reach(cp, NAMESPACE, create=False))
            for state in stopped:
                if state.before is not None:
                    eventually(
                        lambda s=state: s.before(s.live(cp, NAMESPACE)), what=f"{state.fixture}: before"
                    )
        finally:
            operator.stop()
        for state in stopped:
            if state.before is None:
                state.create(cp, NAMESPACE)
            elif state.change is not None:
                state.change(cp, NAMESPACE, state.name)
            _write(state, eventually(lambda s=state: (o := s.live(cp, NAMESPACE)) and s.reached(o) and o))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", nargs="*", help="fixture names (default: all)")
    args = parser.parse_args(argv)
    known = {s.fixture: s for s in STATES}
    unknown = [name for name in args.fixtures if name not in known]
    if unknown:
        parser.error(f"unknown fixture(s): {', '.join(unknown)}; known: {', '.join(known)}")
    capture([known[name] for name in args.fixtures] if args.fixtures else list(STATES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
