"""``python -m pgm_control.cli``: the same as the ``pgm-control`` command."""

import sys

from . import main

if __name__ == "__main__":  # importing the module (e.g. to document it) runs nothing
    sys.exit(main())
