"""``python -m fastem.cli``: the ``fastem`` tool."""

import sys

from ._main import main

sys.exit(main())
