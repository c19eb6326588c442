"""``python -m chute_weights ARGS``."""

import sys

from chute_weights.main import main

sys.exit(main(sys.argv[1:]))
