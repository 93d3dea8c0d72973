"""``python -m fastem``: the ``fastem`` tool, as ``python -m fastem.cli``."""

import sys

from .cli import main

sys.exit(main())
