"""DVC stage `decode`: a thin entry point; the logic is `colorize decode` (see its --help)."""

import sys

from colorize_core.cli import main

if __name__ == "__main__":
    main(["decode", *sys.argv[1:]], prog_name="colorize")
