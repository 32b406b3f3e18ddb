"""Stage 5, ``decode``: colorize the test split at every temperature with each checkpoint.

Output: ``<out>/<checkpoint>/T<t>/<key>.png`` at the test images' full resolution, and
``<out>/manifest.json`` listing the images (key, path, synset, class index), checkpoints and
temperatures. Every image of the test list is decoded: colour photos (scored against their
colours) and genuinely grayscale ones (the reference study's separate gray test set, scored by
the classifier alone); unreadable files are skipped with their reason.

Checkpoints with the same weights (``best`` and ``last`` when the last epoch was the best) are
decoded once: the manifest lists the first under ``checkpoints`` and the others under
``same_as`` (``{"last": "best"}``), and the evaluate stage scores them once.

Each ``<checkpoint>/T<t>`` folder carries a fingerprint of the checkpoint file and the test
list; a re-run keeps folders whose fingerprint matches and every image already written, so an
interrupted run resumes, and adding a temperature decodes only that temperature.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from colorize_core.checkpoint import Checkpoint, load_checkpoint
from colorize_core.config import Params
from colorize_core.data.sample import Record, read_list
from colorize_core.images import ImageError, load_pixels, open_image
from colorize_core.inference.colorizer import Colorizer, View
from colorize_core.inference.pipeline import PipelineSizes, network_streams, run_pipeline
from colorize_core.io import atomic_output, atomic_write_json, atomic_write_text, file_sha256, remove_stale_temporaries
from colorize_core.progress import progress

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FINGERPRINT = ".fingerprint"


@dataclass(frozen=True)
class TestImage:
    key: str  # position in the test list, "000042"
    path: str
    synset: str
    class_index: int


def temperature_dir(T: float) -> str:
    """Folder name of a temperature: 0 -> 'T0', 0.09 -> 'T0.09'."""
    return f"T{T:g}"


def test_images(lists_dir: Path) -> list[TestImage]:
    """Every image of the test list, in list order, keyed by its position (as in the shards)."""
    records: list[Record] = read_list(Path(lists_dir) / "test.csv")
    return [TestImage(f"{i:06d}", r.path, r.synset, r.class_index) for i, r in enumerate(records)]


def _prepare_folder(folder: Path, fingerprint: str) -> None:
    """Empty a folder written for another checkpoint or test list; keep a matching one."""
    marker = folder / FINGERPRINT
    if folder.is_dir() and (not marker.is_file() or marker.read_text() != fingerprint):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    if not marker.is_file():
        atomic_write_text(marker, fingerprint)


def run_decode(params: Params, lists_dir: Path, models_dir: Path, out_dir: Path) -> dict:
    """Colorize every test image with each checkpoint (``params.decode``) at every temperature of
    ``params.sweep``; returns the manifest."""
    paths = {name: Path(models_dir) / f"{name}.pt" for name in params.decode.checkpoints}
    checkpoints, same_as = distinct_checkpoints(paths)
    temperatures = params.sweep
    images = test_images(lists_dir)
    keep_dirs = {name: {temperature_dir(T) for T in temperatures} for name in checkpoints}
    for child in out_dir.glob("*/") if out_dir.is_dir() else []:  # checkpoints no longer asked for
        if child.is_dir() and child.name not in checkpoints:
            shutil.rmtree(child)
    skipped: dict[str, str] = {}
    for name, (checkpoint_path, checkpoint) in checkpoints.items():
        colorizer = Colorizer(checkpoint, params.decode.device, params.decode.size, compiled=True)
        fingerprint = "\n".join(
            [file_sha256(checkpoint_path), file_sha256(Path(lists_dir) / "test.csv"), f"size {colorizer.size}"]
        )
        for stale in (out_dir / name).glob("T*"):
            if stale.name not in keep_dirs[name]:
                shutil.rmtree(stale)
        folders = {T: out_dir / name / temperature_dir(T) for T in temperatures}
        for folder in folders.values():
            _prepare_folder(folder, fingerprint)
        todo = [im for im in images if not all((folders[T] / f"{im.key}.png").is_file() for T in temperatures)]
        with progress(total=len(images), initial=len(images) - len(todo), desc=f"decode {name}", unit="img") as bar:
            decode_images(todo, colorizer, temperatures, folders, params, skipped, bar.update)
    manifest = {
        "checkpoints": list(checkpoints),
        "same_as": same_as,
        "temperatures": temperatures,
        "images": [asdict(im) for im in images if im.key not in skipped],
        "skipped": {im.key: skipped[im.key] for im in images if im.key in skipped},  # in list order
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    log.info(
        "decode: %d test images × %d temperatures × %d checkpoints (%d skipped)%s",
        len(manifest["images"]),
        len(temperatures),
        len(checkpoints),
        len(skipped),
        "".join(f"; {name} has the weights of {first}, decoded once" for name, first in same_as.items()),
    )
    return manifest


def decode_images(
    todo: list[TestImage],
    colorizer: Colorizer,
    temperatures: list[float],
    folders: dict[float, Path],
    params: Params,
    skipped: dict[str, str],
    on_done: Callable[[], None],
) -> None:
    """Colorize the images at every temperature into ``folders[T]/<key>.png`` through the pipeline
    (readers decode, the network runs on batches of one shape, one stream per core on a CPU,
    writers compose and write); an unreadable image's reason goes into ``skipped``."""

    def read(item: TestImage) -> tuple[TestImage, View] | None:
        try:
            return item, colorizer.view(load_picture(item.path, params.decode.max_pixels))
        except ImageError as error:
            skipped[item.key] = str(error)  # counted at the end, listed in the manifest
            return None

    def infer(batch: list[tuple[TestImage, View]]) -> list[list[np.ndarray]]:
        return colorizer.ab_batch([view for _, view in batch], temperatures)

    def finish(prepared: tuple[TestImage, View], grids: list[np.ndarray]) -> None:
        item, view = prepared
        for T, rgb in zip(temperatures, colorizer.compose(view.lightness, grids, threads=1)):  # writers in parallel
            save_png(rgb, folders[T] / f"{item.key}.png")

    streams = network_streams(colorizer.device.type, len(todo))
    sizes = PipelineSizes(batch_size=params.decode.batch_size, streams=streams)
    key = lambda prepared: prepared[1].batch_key  # noqa: E731
    run_pipeline(todo, read, key, infer, finish, sizes, on_done)


def distinct_checkpoints(paths: dict[str, Path]) -> tuple[dict[str, tuple[Path, Checkpoint]], dict[str, str]]:
    """Load checkpoints and drop repeats: ({name: (path, checkpoint)} of distinct weights, in the
    given order; {repeated name: the first name with its weights})."""
    distinct: dict[str, tuple[Path, Checkpoint]] = {}
    first_with: dict[str, str] = {}  # weights digest -> name
    same_as: dict[str, str] = {}
    for name, path in paths.items():
        checkpoint = load_checkpoint(path)
        digest = checkpoint.weights_digest()
        if digest in first_with:
            same_as[name] = first_with[digest]
        else:
            first_with[digest] = name
            distinct[name] = (path, checkpoint)
    return distinct, same_as


def load_picture(path: str, max_pixels: int | None = None) -> Image.Image:
    """Open and decode a photo (EXIF orientation applied) after the header's pixel check."""
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    with open_image(path, **kwargs) as image:
        return load_pixels(image)


def save_png(rgb: np.ndarray, path: Path) -> None:
    """Write an (H, W, 3) uint8 image as PNG, atomically."""
    with atomic_output(path, "wb") as f:
        Image.fromarray(rgb).save(f, format="PNG", compress_level=1)
