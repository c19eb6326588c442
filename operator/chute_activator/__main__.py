import sys

from chute_activator.main import main

sys.exit(main(sys.argv[1:]))
