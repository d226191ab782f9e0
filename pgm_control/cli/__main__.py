"""``python -m pgm_control.cli``: the same as the ``pgm-control`` command."""

import sys

from . import main

sys.exit(main())
