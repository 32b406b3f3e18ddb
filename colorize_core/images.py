"""Safe image reading: header checks before decoding, every PIL mode brought to 8-bit sRGB.

Every file the pipeline reads goes through :func:`open_image`, which refuses files whose header
claims more pixels than a limit *before* anything is decoded, and turns every failure (missing,
zero-byte, not an image, truncated, corrupt) into an :class:`ImageError` with a one-line reason.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from colorize_core.constants import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS

# Our own pixel limit (checked on the header, before decoding) replaces PIL's global one, which
# would otherwise refuse images between its limit and a user's larger ``max_pixels``.
Image.MAX_IMAGE_PIXELS = None
# A truncated file must fail loudly, not come back half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Modes that hold one channel of gray.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})


#: EXIF tag of the orientation, and the transposition that makes each orientation upright.
EXIF_ORIENTATION = 0x0112
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(Exception):
    """An image that cannot be used; ``str(error)`` is a one-line reason."""


def describe(source: str | os.PathLike | BinaryIO) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<stream>")


@contextmanager
def open_image(source: str | os.PathLike | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """Open an image lazily (header only) and refuse it when it claims too many pixels.

    Raises
    ------
    ImageError
        missing, empty, not an image, or more than ``max_pixels`` pixels; later, in
        :func:`decode`, truncated or corrupt data.
    """
    name = describe(source)
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise ImageError(f"{name}: " + ("not a regular file" if os.path.exists(source) else "no such file"))
        if os.path.getsize(source) == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image file") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name}: cannot read header ({error})") from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{name}: header claims an empty image ({width}x{height})")
        if width * height > max_pixels:
            raise ImageError(
                f"{name}: header claims {width}x{height} = {width * height:,} pixels, "
                f"more than the limit of {max_pixels:,} (max_pixels); refused before decoding"
            )
        yield image


def load_pixels(image: Image.Image, draft_size: int | None = None, upright: bool = True) -> Image.Image:
    """Read an opened image's pixels (the file decoder runs now) and, with ``upright``, apply its EXIF orientation.

    Parameters
    ----------
    image : an image from :func:`open_image`
    draft_size : when given, let the JPEG decoder scale down in the DCT domain (up to 8×) while
        keeping both sides at least this large; much faster for large photos.
    upright : apply the EXIF orientation now; pass False to apply it later with :func:`upright`
        (cheaper on a resized image).
    """
    name = getattr(image, "filename", None) or describe(getattr(image, "fp", None) or "<stream>")
    try:
        if draft_size is not None and image.format == "JPEG":
            image.draft(image.mode if image.mode in ("L", "RGB") else None, (draft_size, draft_size))
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError(f"{name}: cannot decode ({error})") from None
    return set_upright(image) if upright else image


def set_upright(image: Image.Image, orientation_of: Image.Image | None = None) -> Image.Image:
    """Rotate or flip an image as the EXIF orientation of ``orientation_of`` (default: its own) says."""
    orientation = (orientation_of or image).getexif().get(EXIF_ORIENTATION, 1)
    if orientation == 1:
        return image
    if orientation_of is None:
        return ImageOps.exif_transpose(image)
    method = ORIENTATION_TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def is_gray_mode(image: Image.Image) -> bool:
    return image.mode in GRAY_MODES


def _flatten_alpha(image: Image.Image, mode: str) -> Image.Image:
    """Composite an image with transparency onto white, returning ``mode`` ('L' or 'RGB')."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert(mode)


def gray_array(image: Image.Image) -> np.ndarray:
    """Gray levels of a decoded image as floats in [0, 1], shape (H, W), float32.

    16-bit images keep their full precision; colour images are *not* accepted here.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32)
        return np.clip(values / 65535.0, 0, 1)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        scale = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        return np.clip(values / scale, 0, 1)
    if image.mode in _ALPHA_MODES:
        image = _flatten_alpha(image, "L")
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any decoded image as 8-bit sRGB (mode 'RGB').

    Palette images keep their colours, transparency is composited onto white, CMYK and other
    colour spaces go through PIL's conversion, 16-bit gray keeps its high byte (rounded).
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        gray8 = np.round(gray_array(image) * 255).astype(np.uint8)
        return Image.fromarray(gray8, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _ALPHA_MODES:
        return _flatten_alpha(image, "RGB")
    return image.convert("RGB")


def load_rgb8(
    source: str | os.PathLike | BinaryIO,
    size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, str]:
    """Read an image file as 8-bit sRGB, optionally resized to ``size`` × ``size``.

    The resize warps the whole image to a square (as Zhang et al. train), with PIL's
    antialiased bilinear filter after draft-mode JPEG decoding.

    Returns
    -------
    rgb : (H, W, 3) uint8 array
    mode : the file's own PIL mode ("L" for a grayscale JPEG, "CMYK", "P", ...)

    Raises
    ------
    ImageError
        with a one-line reason, for any file that cannot be used.
    """
    with open_image(source, max_pixels) as image:
        mode = image.mode
        decoded = load_pixels(image, draft_size=size, upright=size is None)
        rgb = to_rgb8(decoded)
        if size is not None:
            # Warp to the square first, then turn it upright: the same picture, a smaller transpose.
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            rgb = set_upright(rgb, orientation_of=image)
        return np.asarray(rgb), mode


def is_image_path(path: Path) -> bool:
    """Whether a file name has one of the image extensions the folder sources pick up."""
    return path.suffix.lower() in IMAGE_EXTENSIONS
