"""``python -m coopflower.audit``: the ``coopflower audit`` command."""

import sys

from coopflower.audit.cli import main

sys.exit(main())
