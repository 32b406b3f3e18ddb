"""DVC stage `train`: a thin entry point; the logic is `colorize train` (see its --help).

Multi-GPU: torchrun --nproc_per_node=N stages/train.py --params params.yaml
"""

import sys

from colorize_core.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]], prog_name="colorize")
