"""DVC stage `histogram`: a thin entry point; the logic is `colorize histogram` (see its --help)."""

import sys

from colorize_core.cli import main

if __name__ == "__main__":
    main(["histogram", *sys.argv[1:]], prog_name="colorize")
