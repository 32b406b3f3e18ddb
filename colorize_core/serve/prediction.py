"""One photo's network pass, kept so that any temperature is a re-decode without the network.

:func:`predict` reads an uploaded file (header checked before decoding), runs the network once on
its lightness and keeps the log-probabilities of its unpadded view with its full-resolution
lightness; :func:`render` decodes them at any T, the same arithmetic as
:meth:`Colorizer.colorize_batch` (tests/test_serve.py checks that the two agree pixel for pixel).
"""

from __future__ import annotations

import io
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colorize_core.color import lab_from_srgb
from colorize_core.constants import GRAYSCALE_MAX_CHROMA, OUTPUT_STRIDE
from colorize_core.images import is_gray_mode, load_pixels, open_image, to_rgb8
from colorize_core.inference.colorizer import Colorizer, lightness_of, network_lightness
from colorize_core.inference.compose_kernel import compose_fast
from colorize_core.inference.photo import metadata_of

#: Long side of the thumbnail on which an upload is checked for colour.
COLOUR_CHECK_SIDE = 256
#: Long side of the previews that the page shows while the temperature slider moves (the full
#: resolution follows when it stops); photos this small or smaller are always decoded in full.
PREVIEW_SIDE = 1024


@dataclass
class Prediction:
    """What the server keeps of one photo."""

    lightness: np.ndarray  # (H, W) float32: the photo's own L at full resolution
    preview_lightness: np.ndarray | None  # (h', w') float32: L with its long side PREVIEW_SIDE; None when H, W fit
    log_probs: torch.Tensor  # (Q, h/4, w/4) float32: log Ẑ over the photo's unpadded network view
    colour_input: bool  # the upload was a colour photo (|ab| above GRAYSCALE_MAX_CHROMA somewhere)
    pil_format: str | None  # the upload's format ("JPEG", "PNG", ...)
    metadata: dict  # EXIF (orientation applied) and ICC profile, copied into outputs

    @property
    def nbytes(self) -> int:
        extra = sum(len(value) for value in self.metadata.values() if value)
        preview = 0 if self.preview_lightness is None else self.preview_lightness.nbytes
        return self.lightness.nbytes + preview + self.log_probs.numel() * self.log_probs.element_size() + extra

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), those of the upload (upright)."""
        return self.lightness.shape[1], self.lightness.shape[0]


def named_file(path: Path, name: str) -> io.BufferedReader:
    """A file opened for reading whose errors name it ``name`` (not its private temporary path)."""
    raw = io.FileIO(path)
    raw.name = name
    return io.BufferedReader(raw)


def has_colour(picture: Image.Image) -> bool:
    """Whether a decoded photo holds colour: some |ab| of its thumbnail above GRAYSCALE_MAX_CHROMA."""
    if is_gray_mode(picture):
        return False
    thumbnail = to_rgb8(picture).copy()
    thumbnail.thumbnail((COLOUR_CHECK_SIDE, COLOUR_CHECK_SIDE))
    ab = lab_from_srgb(np.asarray(thumbnail, np.float32) / 255)[..., 1:]  # (h, w, 2)
    return bool(np.any(np.hypot(ab[..., 0], ab[..., 1]) > GRAYSCALE_MAX_CHROMA))


def predict(
    colorizer: Colorizer, path: Path, max_pixels: int, name: str = "upload", lock: threading.Lock | None = None
) -> Prediction:
    """Decode one image file and run the network on it once.

    ``lock``, when given, is held from decoding to the end of the network pass, so that concurrent
    requests decode and run the network one at a time (memory and cores stay bounded).

    Raises
    ------
    ImageError
        with a one-line reason naming ``name``: not an image, over ``max_pixels``, truncated.
    """
    with lock or nullcontext():
        with named_file(path, name) as stream, open_image(stream, max_pixels) as image:
            pil_format = image.format
            picture = load_pixels(image)
        padded, (h, w) = network_lightness(picture, colorizer.size, colorizer.model.input_multiple)  # (H', W')
        log_probs = colorizer.log_probs(padded[None])  # (1, Q, H'/4, W'/4)
    log_probs = log_probs[0, :, : h // OUTPUT_STRIDE, : w // OUTPUT_STRIDE].contiguous()  # (Q, h/4, w/4)
    lightness = lightness_of(picture)
    return Prediction(
        lightness, preview_of(lightness), log_probs, has_colour(picture), pil_format, metadata_of(picture)
    )


def preview_of(lightness: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray | None:
    """L with its long side reduced to ``side`` (box filter), (H, W) -> (h', w'); None when it fits."""
    height, width = lightness.shape
    if max(height, width) <= side:
        return None
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(lightness, mode="F").resize(size, Image.Resampling.BOX), np.float32)


def render(colorizer: Colorizer, prediction: Prediction, T: float, preview: bool = False) -> np.ndarray:
    """The photo colorized at temperature T from its cached log-probabilities, (H, W, 3) uint8;
    with ``preview``, at most PREVIEW_SIDE on its long side."""
    ab_grid = colorizer.ab_grids(prediction.log_probs[None], [T])[0][0]  # (h/4, w/4, 2)
    small = preview and prediction.preview_lightness is not None
    return compose_fast(prediction.preview_lightness if small else prediction.lightness, ab_grid)


def render_gray(prediction: Prediction) -> np.ndarray:
    """The network's input as the page shows it: the photo's lightness as neutral gray, (H, W, 3) uint8."""
    return compose_fast(prediction.lightness, np.zeros((1, 1, 2), np.float32))
