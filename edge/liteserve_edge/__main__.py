"""`python -m liteserve_edge`."""

import sys

from liteserve_edge.cli import main

sys.exit(main())
