"""``python -m fastem.bench``: the same as ``fastem bench``."""

import sys

from ._main import main

sys.exit(main())
