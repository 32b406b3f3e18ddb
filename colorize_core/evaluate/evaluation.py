"""Stage 6, ``evaluate``: an ImageNet classifier and colour metrics on every variant of every test image.

Variants of a test image (the reference study's section 8): ORIGINAL (the colour ground truth),
one colorization per temperature and checkpoint, and BW IMG (its lightness alone, as a neutral
gray). For each one: the classifier's top-1 class and confidence, the confidence of the true
class, top-1 / top-5 correctness, AuC (plain and rebalanced), PSNR and colourfulness.

Genuinely grayscale test photos (no colour truth; the reference study's separate gray test set)
are scored apart, by the classifier alone: BW IMG against each colorization.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from colorize_core import imagenet
from colorize_core.bins import Bins
from colorize_core.color import lab_from_srgb
from colorize_core.constants import GRAYSCALE_MAX_CHROMA
from colorize_core.evaluate.classifiers import Classifier
from colorize_core.evaluate.metrics import auc, colourfulness, psnr, rebalancing_pixel_weights
from colorize_core.images import ImageError, to_rgb8
from colorize_core.inference.annealed_mean import compose
from colorize_core.inference.colorizer import lightness_of
from colorize_core.inference.decode_stage import MANIFEST, TestImage, load_picture, temperature_dir
from colorize_core.progress import progress

log = logging.getLogger(__name__)

ORIGINAL = "ORIGINAL"
GRAYSCALE = "BW IMG"
NO_CHECKPOINT = "-"
TOP_K = 5
THUMBNAIL_SIDE = 256

#: (checkpoint name, temperature) -> colorized image (H, W, 3) uint8
Colorizations = dict[tuple[str, float], np.ndarray]


def variant_name(T: float) -> str:
    """The study's column names: 't=0.09'."""
    return f"t={T:g}"


@dataclass(frozen=True)
class Reference:
    """What every variant of one test image is compared with."""

    rgb: np.ndarray  # (H, W, 3) uint8, the original
    lightness: np.ndarray  # (H, W) float32
    ab: np.ndarray  # (H, W, 2) float32
    colourfulness: float

    @property
    def is_gray(self) -> bool:
        """No colour truth: |ab| never above GRAYSCALE_MAX_CHROMA."""
        return not np.any(np.hypot(self.ab[..., 0], self.ab[..., 1]) > GRAYSCALE_MAX_CHROMA)


def reference_of(picture) -> Reference:
    rgb = np.asarray(to_rgb8(picture))
    lab = lab_from_srgb(rgb.astype(np.float32) / 255)
    return Reference(rgb, lightness_of(picture), lab[..., 1:], colourfulness(rgb))


def classify_variants(
    item: TestImage, variants: list[tuple[str, str, float | None, np.ndarray]], classifier: Classifier
) -> list[dict]:
    """The classifier's verdict on each variant (see :func:`score_variants`), one row each."""
    probabilities = classifier.probabilities([v[3] for v in variants])  # (V, 1000)
    labelled = item.class_index >= 0
    rows = []
    for (checkpoint, name, T, _), probs in zip(variants, probabilities):
        top = np.argsort(-probs, kind="stable")[:TOP_K]
        rows.append(
            {
                "image": item.key,
                "path": item.path,
                "synset": item.synset,
                "true_class": item.class_index,
                "true_name": imagenet.class_name(item.class_index),
                "checkpoint": checkpoint,
                "variant": name,
                "T": T,
                "top1_class": int(top[0]),
                "top1_name": imagenet.class_name(int(top[0])),
                "top1_confidence": float(probs[top[0]]),
                "true_confidence": float(probs[item.class_index]) if labelled else np.nan,
                "top1_correct": bool(top[0] == item.class_index) if labelled else np.nan,
                "top5_correct": bool(item.class_index in top) if labelled else np.nan,
            }
        )
    return rows


def score_variants(
    item: TestImage,
    reference: Reference,
    variants: list[tuple[str, str, float | None, np.ndarray]],
    classifier: Classifier,
    bins: Bins,
) -> list[dict]:
    """One row per variant: classification and colour metrics.

    ``variants``: (checkpoint, variant name, temperature or None, image (H, W, 3) uint8).
    """
    pixel_weights = rebalancing_pixel_weights(reference.ab, bins)
    rows = []
    for row, (_, name, _, rgb) in zip(classify_variants(item, variants, classifier), variants):
        ab = reference.ab if name == ORIGINAL else lab_from_srgb(rgb.astype(np.float32) / 255)[..., 1:]
        colourful = colourfulness(rgb)
        rows.append(
            {
                **row,
                "auc": auc(ab, reference.ab),
                "auc_rebalanced": auc(ab, reference.ab, pixel_weights),
                "psnr": psnr(rgb, reference.rgb),
                "colourfulness": colourful,
                "colourfulness_diff": colourful - reference.colourfulness,
            }
        )
    return rows


Thumbnails = dict[str, dict[tuple[str, str], np.ndarray]]  # key -> (checkpoint, variant) -> small uint8 image


@dataclass
class Evaluation:
    rows: list[dict]  # colour photos: one per image × variant (× checkpoint)
    skipped: dict[str, str]  # path -> reason
    thumbnails: Thumbnails
    grayscale_rows: list[dict] = field(default_factory=list)  # real grayscale photos, classification only
    grayscale_thumbnails: Thumbnails = field(default_factory=dict)


def thumbnail(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    image = Image.fromarray(rgb)
    image.thumbnail((side, side), Image.Resampling.BICUBIC)
    return np.asarray(image)


def evaluate_images(
    items: Iterable[TestImage],
    colorizations: Callable[[TestImage, object], Colorizations],
    checkpoints: list[str],
    temperatures: list[float],
    classifier: Classifier,
    bins: Bins,
    thumbnails_for: int = 0,
    max_pixels: int | None = None,
) -> Evaluation:
    """Score every variant of every image.

    ``colorizations(item, picture)`` gives the colorized images of one test image, read from the
    decode stage's output or computed on the fly. Colour photos go to ``rows``; photos with no
    colour (|ab| never above GRAYSCALE_MAX_CHROMA) to ``grayscale_rows``, classified only.
    Thumbnails of every variant are kept for the first ``thumbnails_for`` images of each kind
    (figures and the HTML gallery).
    """
    result = Evaluation([], {}, {})
    for item in progress(list(items), desc="evaluate", unit="img"):
        try:
            picture = load_picture(item.path, max_pixels)
        except ImageError as error:
            result.skipped[item.path] = str(error)
            continue
        reference = reference_of(picture)
        is_gray = reference.is_gray
        colours = colorizations(item, picture)
        variants = [] if is_gray else [(NO_CHECKPOINT, ORIGINAL, None, reference.rgb)]
        variants += [(c, variant_name(T), T, colours[c, T]) for c in checkpoints for T in temperatures]
        gray = compose(reference.lightness, np.zeros((1, 1, 2), np.float32))
        variants.append((NO_CHECKPOINT, GRAYSCALE, None, gray))
        if is_gray:
            result.grayscale_rows += classify_variants(item, variants, classifier)
        else:
            result.rows += score_variants(item, reference, variants, classifier, bins)
        thumbnails = result.grayscale_thumbnails if is_gray else result.thumbnails
        if len(thumbnails) < thumbnails_for:
            thumbnails[item.key] = {(c, name): thumbnail(rgb) for c, name, _, rgb in variants}
    log.info(
        "evaluate: %d colour and %d grayscale images scored, %d skipped",
        len({r["image"] for r in result.rows}),
        len({r["image"] for r in result.grayscale_rows}),
        len(result.skipped),
    )
    return result


def decoded_colorizations(decoded_dir: Path) -> Callable[[TestImage, object], Colorizations]:
    """Read the decode stage's PNGs for one test image."""
    manifest = json.loads((Path(decoded_dir) / MANIFEST).read_text())

    def read(item: TestImage, picture) -> Colorizations:
        return {
            (c, T): np.asarray(Image.open(Path(decoded_dir) / c / temperature_dir(T) / f"{item.key}.png").convert("RGB"))
            for c in manifest["checkpoints"]
            for T in manifest["temperatures"]
        }

    return read


def live_colorizations(colorizers: dict, temperatures: list[float]) -> Callable[[TestImage, object], Colorizations]:
    """Colorize one test image on the fly with each checkpoint (ad-hoc evaluation)."""

    def colorize(item: TestImage, picture) -> Colorizations:
        out = {}
        for name, colorizer in colorizers.items():
            for T, rgb in zip(temperatures, colorizer.colorize_batch([picture], temperatures)[0]):
                out[name, T] = rgb
        return out

    return colorize
