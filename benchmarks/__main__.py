"""`python -m benchmarks` (or `python3 dev.py bench`): run the benchmarks, print the table."""

import sys

from benchmarks.runner import main

sys.exit(main())
