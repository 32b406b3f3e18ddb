"""The README's contact sheet: six imagenet-val photos as gray input, colorized by the bundled
model at the headline temperature, and original.

    python scripts/readme_sheet.py [--data ../shared/data/imagenet-val] [--out docs/contact_sheet.jpg]

The photos are drawn at random with a fixed seed from the colour photos of the test set, not
chosen by hand. imagenet-val is test data: this only shows the model, it tunes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from colorize_core.data.sample import list_folder
from colorize_core.inference.annealed_mean import compose
from colorize_core.inference.colorizer import Colorizer, lightness_of
from colorize_core.inference.decode_stage import load_picture
from colorize_core.io import atomic_output

ROOT = Path(__file__).resolve().parents[1]
PANEL = 150  # pixels, each side of a square thumbnail
LABEL_WIDTH = 90


def is_colour(picture: Image.Image) -> bool:
    rgb = np.asarray(picture.convert("RGB"), np.int16)
    return int(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max()) > 8


def square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((PANEL, PANEL), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-val")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "contact_sheet.jpg")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    colorizer = Colorizer.pretrained(device="cpu")
    T = colorizer.default_T
    records = list_folder(args.data, "val")
    order = np.random.default_rng(args.seed).permutation(len(records))
    pictures = []
    for i in order:
        picture = load_picture(records[i].path)
        if is_colour(picture):
            pictures.append(picture)
        if len(pictures) == args.count:
            break
    rows = {
        "gray": [compose(lightness_of(p), np.zeros((1, 1, 2), np.float32)) for p in pictures],
        f"colorized\nT = {T:g}": [c[0] for c in colorizer.colorize_batch(pictures, [T])],
        "original": [np.asarray(p.convert("RGB")) for p in pictures],
    }
    sheet = Image.new("RGB", (LABEL_WIDTH + PANEL * len(pictures), PANEL * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    for r, (label, images) in enumerate(rows.items()):
        draw.multiline_text((8, r * PANEL + PANEL // 2 - 18), label, fill="black", font=font)
        for c, rgb in enumerate(images):
            sheet.paste(square(Image.fromarray(rgb)), (LABEL_WIDTH + c * PANEL, r * PANEL))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out, "wb") as f:
        sheet.save(f, format="JPEG", quality=85, optimize=True)
    print(f"{args.out}: {sheet.width}×{sheet.height}, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
