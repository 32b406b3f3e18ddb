"""DVC stage `evaluate`: a thin entry point; the logic is `colorize evaluate` (see its --help)."""

import sys

from colorize_core.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]], prog_name="colorize")
