"""`python -m jaxprune ...` (same as the `jaxprune` console script)."""

import sys

from .cli import main

sys.exit(main())
