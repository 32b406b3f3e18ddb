"""DVC stage `shard`: a thin entry point; the logic is `colorize shard` (see its --help)."""

import sys

from colorize_core.cli import main

if __name__ == "__main__":
    main(["shard", *sys.argv[1:]], prog_name="colorize")
