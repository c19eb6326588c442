"""``python -m chute_sidecar ARGS``."""

import sys

from chute_sidecar.main import main

sys.exit(main(sys.argv[1:]))
