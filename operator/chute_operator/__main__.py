import sys

from chute_operator.entry import main

sys.exit(main())
