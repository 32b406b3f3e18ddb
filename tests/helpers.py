"""Test pictures made here: smooth colour gradients, and files of every awkward kind."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def colourful_rgb(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, saturated test picture (gradients of hue), (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phase = rng.uniform(0, 2 * np.pi, 3)
    rgb = 0.5 + 0.45 * np.sin(2 * np.pi * np.stack([x + y, x - y, 2 * x], -1) + phase)
    return np.round(rgb * 255).astype(np.uint8)


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` pixels but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def exif_rotated_jpeg(path: Path) -> None:
    """A 40×20 JPEG, left half red, right half blue, tagged orientation 6 (display rotated 90° CW).

    Displayed upright it is 20 wide and 40 tall, red on top, blue below.
    """
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (220, 20, 20)
    rgb[:, 20:] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(path, quality=95, exif=exif)


def write_image_zoo(folder: Path) -> dict[str, str]:
    """Write one file of every awkward kind; returns name -> what should happen to it.

    Outcomes: "written", "skipped_unreadable", "excluded_grayscale", "excluded_no_chroma".
    """
    folder.mkdir(parents=True, exist_ok=True)
    rgb = colourful_rgb()
    expected = {}

    def save(name: str, image: Image.Image, outcome: str, **kwargs) -> None:
        image.save(folder / name, **kwargs)
        expected[name] = outcome

    save("good.jpg", Image.fromarray(rgb), "written", quality=95)
    save("good.png", Image.fromarray(rgb), "written")
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "written", quality=95)
    save("palette.png", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE), "written")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    save("alpha.png", Image.fromarray(rgba), "written")
    save("tiny.png", Image.fromarray(rgb[:2, :3]), "written")
    save("large.jpg", Image.fromarray(colourful_rgb(2400, 3200, seed=1)), "written", quality=90)
    save("gray.jpg", Image.fromarray(rgb).convert("L"), "excluded_grayscale", quality=95)
    gray16 = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    save("gray16.png", Image.fromarray(gray16), "excluded_grayscale")
    gray_as_rgb = Image.fromarray(rgb).convert("L").convert("RGB")
    save("gray_as_rgb.png", gray_as_rgb, "excluded_no_chroma")
    exif_rotated_jpeg(folder / "rotated.jpg")
    expected["rotated.jpg"] = "written"

    (folder / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "skipped_unreadable"
    (folder / "notes.png").write_text("this is not an image\n")
    expected["notes.png"] = "skipped_unreadable"
    good = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    expected["truncated.jpg"] = "skipped_unreadable"
    corrupt = bytearray(good)
    corrupt[200:400] = b"\xff" * 200
    (folder / "corrupt.jpg").write_bytes(bytes(corrupt[:300]))
    expected["corrupt.jpg"] = "skipped_unreadable"
    (folder / "bomb.png").write_bytes(png_with_claimed_size(100_000, 100_000))
    expected["bomb.png"] = "skipped_unreadable"
    return expected


def encode_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_checkpoint(path: Path, train_size: int = 32, seed: int = 0) -> Path:
    """A self-contained checkpoint of an untrained narrow network over the in-gamut bins of grid 16."""
    import torch

    from colorize_core.checkpoint import Checkpoint
    from colorize_core.config import HistogramParams
    from colorize_core.data.histogram import bins_from_counts
    from colorize_core.model import ModelConfig, build_model
    from colorize_core.ab_grid import AbGrid
    from colorize_core.quantize import srgb_lut

    grid = AbGrid(16)
    counts = np.where(srgb_lut(16).in_gamut, np.arange(grid.num_cells) % 7 + 1, 0)
    bins = bins_from_counts(counts, grid, HistogramParams())
    config = ModelConfig("eccv16", 0.125, bins.num_classes)
    torch.manual_seed(seed)
    model = build_model(config)
    Checkpoint(config, model.state_dict(), bins, train_size, epoch=1, val_loss=1.0, kind="best").save(path)
    return path


def skimage_photo(name: str) -> np.ndarray:
    """A colour photo that scikit-image ships, (H, W, 3) uint8."""
    import skimage.data

    return getattr(skimage.data, name)()


def write_lists(folder: Path, train: list[Path], val=(), test=()) -> Path:
    """train.csv, val.csv and test.csv in ``folder``, every photo labelled tench (class 0)."""
    from colorize_core.data.sample import Record, write_list

    for split, paths in (("train", train), ("val", val), ("test", test)):
        write_list([Record(str(p), "n01440764", 0) for p in paths], folder / f"{split}.csv")
    return folder


def colour_photos(folder: Path, count: int) -> list[Path]:
    """``count`` small colourful PNGs of slightly different sizes in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:03d}.png"
        Image.fromarray(colourful_rgb(40 + i, 56, seed=i)).save(path)
        paths.append(path)
    return paths


#: Run by :func:`run_until` in the child: wraps TARGET so that, once it has returned CALLS times,
#: the child writes EVENT and waits to be killed there; then runs the `colorize` command line.
_PAUSE_AT = """
import importlib, pathlib, signal, sys, time
# Ctrl-C as in a terminal's foreground job: a shell without job control (a CI script's `cmd &`,
# nohup) starts its background children with SIGINT ignored, and Python then keeps ignoring it.
signal.signal(signal.SIGINT, signal.default_int_handler)
target, calls, event, *argv = sys.argv[1:]
module_name, name = target.split(":")
module = importlib.import_module(module_name)
real, count = getattr(module, name), [0]

def pause_after(*args, **kwargs):
    result = real(*args, **kwargs)
    count[0] += 1
    if count[0] == int(calls):
        pathlib.Path(event).write_text("reached")
        while True:  # short sleeps: a SIGINT that the kernel hands to another thread wakes no long one,
            time.sleep(0.05)  # and Python runs its handler only when the main thread is back in Python
    return result

setattr(module, name, pause_after)
from colorize_core.cli import main
main(argv, prog_name="colorize")
"""


def run_until(target: str, calls: int, argv: list[str], event: Path, **popen) -> subprocess.Popen:
    """Start ``colorize ARGV`` in a child process and return it once ``target`` ("module:function",
    as the caller looks it up) has returned ``calls`` times: the child then waits at that point,
    so a kill lands at a known place, not at a time."""
    command = [sys.executable, "-c", _PAUSE_AT, target, str(calls), str(event), *argv]
    process = subprocess.Popen(command, **popen)
    deadline = time.time() + 300
    while not event.exists():
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise AssertionError(f"the child never reached {target} call {calls} (exit {process.poll()})")
        time.sleep(0.01)
    return process


#: Identity for git commits made by tests in throwaway repositories.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def copy_of_the_repository(target: Path) -> Path:
    """The project's tracked files in a fresh git repository (one commit), without its data."""
    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (root / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, target / name)
    env = {**os.environ, **GIT_IDENTITY}
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(argv, cwd=target, env=env, capture_output=True, check=True)
    return target
