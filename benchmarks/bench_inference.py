"""Inference: one 1024×768 photo end to end through `colorize photo`'s code path (decode, network
input, network, annealed mean, upsample + Lab -> sRGB, encode), split into its parts, for the
demo and the full-width network and the bundled model; a sweep of 5 temperatures against a
single one; and what a newcomer waits for: the whole command `colorize photo photo.jpg` with the
bundled model (a new process: Python start, imports, model loading, colorization, writing).

    python benchmarks/bench_inference.py [--repeat 5]

Targets: the network is >= 75% of the end-to-end time for the full-width model; 5 temperatures
cost < 1.5× one for it (the log-probabilities are computed once) and <= 2× one for the demo
network (whose 6 ms leave the full-resolution composition, encoding and writing to dominate: a
sweep composes with the compiled kernel and writes one temperature while composing the next); the
bundled model's whole command takes < 2 s. The whole command with a 5-temperature sweep (the
kernel loaded in the background) is reported beside it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import demo_bins  # noqa: E402
from common import SHARED, check, median_seconds, report  # noqa: E402

from colorize_core.checkpoint import Checkpoint  # noqa: E402
from colorize_core.images import load_pixels, open_image  # noqa: E402
from colorize_core.inference.annealed_mean import compose  # noqa: E402
from colorize_core.inference.colorizer import BUNDLED_CHECKPOINT, Colorizer, lightness_of, network_lightness  # noqa: E402
from colorize_core.inference.photo import PhotoOptions, colorize_files, encode  # noqa: E402
from colorize_core.model import ModelConfig, build_model  # noqa: E402

MODELS = {"demo": (0.25, 64), "full": (1.0, 256)}  # width, training size
SWEEP = [0.0, 0.09, 0.2, 0.38, 1.0]


def make_checkpoint(width: float, size: int, path: Path) -> Path:
    bins = demo_bins()
    config = ModelConfig("eccv16", width, bins.num_classes)
    torch.manual_seed(0)
    Checkpoint(config, build_model(config).state_dict(), bins, size, epoch=0, val_loss=0.0).save(path)
    return path


def test_photo(folder: Path) -> Path:
    """A real ImageNet photo resized to 1024×768, saved as JPEG."""
    source = max((SHARED / "imagenet-sample" / "train").glob("*/*.JPEG"), key=lambda p: p.stat().st_size)
    path = folder / "photo_1024x768.jpg"
    Image.open(source).convert("RGB").resize((1024, 768), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def parts(colorizer: Colorizer, photo: Path, repeat: int) -> dict[str, float]:
    """Median seconds of each step of one colorization at one temperature."""

    def read():
        with open_image(photo) as image:
            return load_pixels(image)

    picture = read()
    multiple = colorizer.model.input_multiple
    small = network_lightness(picture, colorizer.size, multiple)[0][None]
    log_probs = colorizer.log_probs(small)
    grid = colorizer.ab_grids(log_probs, [0.38])[0][0]
    full_l = lightness_of(picture)
    rgb = compose(full_l, grid)
    return {
        "decode": median_seconds(read, repeat),
        "network_input": median_seconds(lambda: network_lightness(picture, colorizer.size, multiple), repeat),
        "network": median_seconds(lambda: colorizer.log_probs(small), repeat),
        "annealed_mean": median_seconds(lambda: colorizer.ab_grids(log_probs, [0.38]), repeat),
        "full_resolution_L": median_seconds(lambda: lightness_of(picture), repeat),
        "upsample_lab_to_srgb": median_seconds(lambda: compose(full_l, grid), repeat),
        "encode_jpeg": median_seconds(lambda: encode(Image.fromarray(rgb), "JPEG", {}), repeat),
    }


def end_to_end(colorizer: Colorizer, photo: Path, temperatures: list[float], folder: Path, repeat: int) -> float:
    options = PhotoOptions(temperatures, out_dir=folder / "out", overwrite=True)
    return median_seconds(lambda: colorize_files([photo], colorizer, options), repeat)


def command_seconds(photo: Path, folder: Path, repeat: int, *options: str) -> float:
    """Median wall time of the whole `colorize photo PHOTO` command (bundled model), a new process each time."""
    command = [str(Path(sys.executable).parent / "colorize"), "photo", str(photo), "--out", str(folder / "cli"), "--overwrite", *options]
    return median_seconds(lambda: subprocess.run(command, check=True, capture_output=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    m: dict = {}
    checks = []
    try:
        photo = test_photo(folder)
        checkpoints = {name: make_checkpoint(width, size, folder / f"{name}.pt") for name, (width, size) in MODELS.items()}
        checkpoints["bundled"] = BUNDLED_CHECKPOINT
        for name, checkpoint in checkpoints.items():
            colorizer = Colorizer.from_checkpoint(checkpoint, "cpu")
            split = parts(colorizer, photo, args.repeat)
            for part, seconds in split.items():
                m[f"{name}_{part}_ms"] = seconds * 1000
            m[f"{name}_parts_total_ms"] = sum(split.values()) * 1000
            one = end_to_end(colorizer, photo, [0.38], folder, args.repeat)
            five = end_to_end(colorizer, photo, SWEEP, folder, args.repeat)
            m[f"{name}_end_to_end_ms"] = one * 1000
            m[f"{name}_end_to_end_5T_ms"] = five * 1000
            # share of the sum of the parts (medians of one loop); the end-to-end median, timed apart,
            # includes file handling and varies more
            m[f"{name}_network_share"] = m[f"{name}_network_ms"] / m[f"{name}_parts_total_ms"]
            m[f"{name}_5T_over_1T"] = five / one
        m["bundled_command_s"] = command_seconds(photo, folder, args.repeat)
        m["bundled_command_5T_s"] = command_seconds(photo, folder, args.repeat, "-t", ",".join(f"{T:g}" for T in SWEEP))
        checks.append(check("full: network share of the parts' total", m["full_network_share"], 0.75))
        checks.append(check("bundled: `colorize photo` command, seconds", m["bundled_command_s"], 2.0, higher_is_better=False))
        checks.append(check("full: 5 temperatures / 1 temperature", m["full_5T_over_1T"], 1.5, higher_is_better=False))
        checks.append(check("demo: 5 temperatures / 1 temperature", m["demo_5T_over_1T"], 2.0, higher_is_better=False))
    finally:
        shutil.rmtree(folder)
    report("inference", m, checks)


if __name__ == "__main__":
    main()
