"""``python -m deeprc_core``: see :mod:`deeprc_core.cli`."""

import os
import sys

# OpenMP threads that sleep instead of spinning while they wait: on a busy machine (a web server, other
# jobs) spinning threads make PyTorch's many small CPU operations several times slower. Must be set before
# torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from deeprc_core.cli import main  # noqa: E402

sys.exit(main())
