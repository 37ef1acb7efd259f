"""``python -m dsdcompare.toyzoo train|eval|verify``."""

import sys

from .cli import main

sys.exit(main())
