"""``python -m sinkd``: see :mod:`sinkd.cli`."""

import sys

from sinkd.cli import main

if __name__ == "__main__":
    sys.exit(main())
