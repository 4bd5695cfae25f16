"""``python -m vaesim``: the same command line as ``vaesim``."""

import sys

from vaesim.cli import main

sys.exit(main())
