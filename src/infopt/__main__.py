"""`python -m infopt ...`, and so `torchrun --nproc-per-node 2 -m infopt distill ...` (one process per rank)."""

import sys

from infopt.cli import main

sys.exit(main())
