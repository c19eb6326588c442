import sys

from chute_operator.cli import main

sys.exit(main())
