"""DVC stage `sample`: a thin entry point; the logic is `colorize sample` (see its --help)."""

import sys

from colorize_core.cli import main

if __name__ == "__main__":
    main(["sample", *sys.argv[1:]], prog_name="colorize")
