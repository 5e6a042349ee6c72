"""``python -m rlreward``: the ``rlreward`` command."""

import sys

from rlreward.commands.main import main

sys.exit(main())
