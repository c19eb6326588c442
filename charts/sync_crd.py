"""Copy crds/chute.yaml into the chart as templates/crd.yaml (values-gated, kept on uninstall).

Run after regenerating the CRD (``chute-operator crd > crds/chute.yaml``)::

    python charts/sync_crd.py          # rewrite the chart's copy
    python charts/sync_crd.py --check  # exit 1 if the copy is stale (tests/chart does this too)

The copy is the source text unchanged except for the values gate around it and the annotations
that keep the CRD when its release is uninstalled or its Argo CD Application deleted
(``helm.sh/resource-policy: keep``, ``argocd.argoproj.io/sync-options: Prune=false,Delete=false``),
added under ``metadata:``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds" / "chute.yaml"
TARGET = ROOT / "charts" / "chute-operator" / "templates" / "crd.yaml"

HEADER = """\
{{- if .Values.crds.install }}
# Copied from crds/chute.yaml by charts/sync_crd.py: do not edit here (tests/chart fails on drift).
# A template rather than crds/, so that `helm upgrade` updates the CRD too; `keep` means
# `helm uninstall` leaves the CRD, and with it every Chute, in place; `Prune=false,Delete=false`
# means the same to Argo CD (neither a sync without it nor deleting the Application deletes it).
"""
FOOTER = "{{- end }}\n"
ANNOTATIONS = (
    "  annotations:\n"
    "    helm.sh/resource-policy: keep\n"
    "    argocd.argoproj.io/sync-options: Prune=false,Delete=false\n"
)


def render(source: str) -> str:
    """The chart template for the CRD text ``source``."""
    if "{{" in source or "}}" in source:
        raise ValueError("the CRD contains '{{' or '}}': Helm would read it as a template")
    lines = [line for line in source.splitlines(keepends=True) if not line.startswith("#")]
    try:
        at = lines.index("metadata:\n") + 1
    except ValueError as error:
        raise ValueError("no top-level 'metadata:' line in the CRD") from error
    if "  annotations:\n" in lines[at : lines.index("spec:\n")]:
        at = lines.index("  annotations:\n", at) + 1
        lines.insert(at, ANNOTATIONS.split("\n", 1)[1])
        body = "".join(lines)
    else:
        body = "".join(lines[:at]) + ANNOTATIONS + "".join(lines[at:])
    if not body.endswith("\n"):
        body += "\n"
    return HEADER + body + FOOTER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the copy is stale")
    args = parser.parse_args(argv)
    wanted = render(SOURCE.read_text())
    current = TARGET.read_text() if TARGET.exists() else ""
    if args.check:
        if current != wanted:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python charts/sync_crd.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        TARGET.write_text(wanted)
        print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
