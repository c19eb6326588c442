"""The ``chute-operator`` console script. ``chute-operator sidecar`` (every Chute pod's sidecar)
starts here without loading the operator's CLI, so a new operator flag or subcommand never changes
the sidecar's version (its hash covers this module, not :mod:`chute_operator.cli`); every other
subcommand goes to the CLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sidecar"]:
        from chute_sidecar.main import main as sidecar_main

        return sidecar_main(argv[1:])
    from chute_operator.cli import main as cli_main

    return cli_main(argv)
