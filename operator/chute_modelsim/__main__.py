"""``python -m chute_modelsim ARGS``."""

import sys

from chute_modelsim.main import main

sys.exit(main(sys.argv[1:]))
