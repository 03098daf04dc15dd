"""`python -m jaxprune.cli ...` (same as the `jaxprune` console script)."""

import sys

from ._main import main

sys.exit(main())
