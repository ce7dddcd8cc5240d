"""`python -m training.interval`."""

import sys

from training.interval.cli import main

sys.exit(main())
