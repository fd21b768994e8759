"""``python -m sigmavault``: the same command as the ``sigmavault`` console script."""

import sys

from sigmavault.cli import main

sys.exit(main())
