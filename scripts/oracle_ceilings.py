"""How much of a classifier's gray -> original gap the colorizer's output format can carry, against
how much a model carries: the diagnostic behind the README's "what it cannot do yet".

    python scripts/oracle_ceilings.py [--data ../shared/data/imagenet-sample --subdir train]
        [--checkpoint colorize_core/resources/colorizer.pt ...] [--limit N] [--out docs/results/oracle_ceilings.md]

Each colour photo is classified (EfficientNet-Lite0, as the evaluate stage does) as the original,
as gray, with its own true colours passed through the colorizer's output format (the true ab
averaged over the network's ¼-resolution grid, optionally snapped to the nearest kept ab bin or
at half chroma, joined with the full-resolution L as a prediction is), and as each checkpoint
colorizes it at its default temperature. The oracle rows are ceilings that a perfect network of
this design could reach; the gap between them and a model's row is the model's.

The default photos are imagenet-sample's ImageNet *train* photos, labelled and never test data
(nothing here is tuned: the script only measures). Most of them are in the CPU recipes' training
pool, so a model's row there is, if anything, flattered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colorize_core.color import lab_from_srgb
from colorize_core.constants import OUTPUT_STRIDE
from colorize_core.data.sample import list_folder
from colorize_core.evaluate.classifiers import load_classifier
from colorize_core.evaluate.evaluation import reference_of
from colorize_core.images import to_rgb8
from colorize_core.inference.annealed_mean import compose
from colorize_core.inference.colorizer import BUNDLED_CHECKPOINT, Colorizer, network_lightness
from colorize_core.inference.decode_stage import load_picture
from colorize_core.io import atomic_output

ROOT = Path(__file__).resolve().parents[1]
ORACLES = ("true ab on the ¼ grid", "true ab on the ¼ grid, nearest kept bin", "true ab on the ¼ grid, half chroma")


def true_grid(picture: Image.Image, colorizer: Colorizer) -> np.ndarray:
    """The photo's own ab averaged over the cells of the network's ¼-resolution output, (h/4, w/4, 2)."""
    _, (h, w) = network_lightness(picture, colorizer.size, colorizer.model.input_multiple)
    small = np.asarray(to_rgb8(picture).resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255
    ab = lab_from_srgb(small)[..., 1:]
    gh, gw = h // OUTPUT_STRIDE, w // OUTPUT_STRIDE
    cells = ab[: gh * OUTPUT_STRIDE, : gw * OUTPUT_STRIDE].reshape(gh, OUTPUT_STRIDE, gw, OUTPUT_STRIDE, 2)
    return cells.mean(axis=(1, 3))


def nearest_bins(grid: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each ab of ``grid`` (h, w, 2) replaced by the nearest of ``centres`` (Q, 2)."""
    distances = ((grid.reshape(-1, 1, 2) - centres[None]) ** 2).sum(-1)  # (h·w, Q)
    return centres[distances.argmin(axis=1)].reshape(grid.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-sample")
    parser.add_argument("--subdir", default="train")
    parser.add_argument("--checkpoint", type=Path, action="append", help="repeatable; default: the bundled model")
    parser.add_argument("--limit", type=int, default=None, help="the first N photos only (a quick look)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "oracle_ceilings.md")
    args = parser.parse_args()
    device = torch.device("cpu")
    colorizers = {path: Colorizer.from_checkpoint(path, device) for path in args.checkpoint or [BUNDLED_CHECKPOINT]}
    reference = next(iter(colorizers.values()))  # its grid and bins define the oracle rows
    centres = reference.centres.numpy()
    classifier = load_classifier("efficientnet_lite0", device)
    names = ["ORIGINAL", "BW IMG", *ORACLES]
    names += [f"{p.name}: T = {c.default_T:g}, short side {c.size}" for p, c in colorizers.items()]
    correct, confidence, skipped = {n: [] for n in names}, {n: [] for n in names}, 0
    records = [r for r in list_folder(args.data, args.subdir) if r.class_index >= 0][: args.limit]
    for record in records:
        picture = to_rgb8(load_picture(record.path))
        truth = reference_of(picture)
        if truth.is_gray:
            skipped += 1  # no colour to carry
            continue
        lightness = truth.lightness
        grid = true_grid(picture, reference)
        variants = [truth.rgb, compose(lightness, np.zeros((1, 1, 2), np.float32))]
        variants += [compose(lightness, g) for g in (grid, nearest_bins(grid, centres), grid / 2)]
        variants += [c.colorize_batch([picture], [c.default_T])[0][0] for c in colorizers.values()]
        for name, probabilities in zip(names, classifier.probabilities(variants)):
            correct[name].append(probabilities.argmax() == record.class_index)
            confidence[name].append(probabilities[record.class_index])
    lines = [
        f"# Oracle ceilings: {len(correct['ORIGINAL'])} colour photos of {args.data.name}/{args.subdir}",
        "",
        f"`python scripts/oracle_ceilings.py{''.join(' ' + a for a in sys.argv[1:])}`",
        "",
        f"{skipped} gray photos skipped. Classifier: {classifier.name}.",
        "",
        "| variant | top-1 | true-class confidence |",
        "|---|---|---|",
        *(f"| {n} | {np.mean(correct[n]):.3f} | {np.mean(confidence[n]):.3f} |" for n in names),
    ]
    with atomic_output(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
