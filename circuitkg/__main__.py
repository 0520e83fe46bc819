"""``python -m circuitkg`` and ``torchrun -m circuitkg``: the ``circuitkg`` command."""

import sys

from circuitkg.cli import main

if __name__ == "__main__":
    sys.exit(main())
