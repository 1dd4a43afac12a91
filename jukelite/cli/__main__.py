"""`python -m jukelite.cli ...` (what `torchrun -m jukelite.cli train ...` runs)."""

import sys

from jukelite.cli import main

sys.exit(main())
