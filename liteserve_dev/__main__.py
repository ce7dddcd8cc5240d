"""`python -m liteserve_dev ...` = the `liteserve-model` console script."""

import sys

from liteserve_dev.cli import main

sys.exit(main())
