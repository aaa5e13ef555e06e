"""``python -m deeprc_core``: see :mod:`deeprc_core.cli`."""

import sys

from deeprc_core.cli import main

sys.exit(main())
