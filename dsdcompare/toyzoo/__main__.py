"""``python -m dsdcompare.toyzoo train|eval|verify``."""

import sys

from ..cli.toyzoo import main

sys.exit(main())
