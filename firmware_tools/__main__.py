"""Entry point for ``python -m firmware_tools``."""

import sys

from firmware_tools.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
