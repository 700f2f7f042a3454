"""``python -m starpod_session``: the same as the ``starpod-session`` command."""

import sys

from .cli import main

sys.exit(main())
