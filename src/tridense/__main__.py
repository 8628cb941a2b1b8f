"""``python -m tridense`` is the ``tridense`` command."""

import sys

from tridense.cli import main

sys.exit(main())
