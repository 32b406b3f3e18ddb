"""``colorize photo``: colorize your own photos, files, folders or a stream, at full resolution.

Every input is read with the header check of :mod:`colorize_core.images` (a file that claims
more pixels than the limit is refused before decoding), its EXIF orientation applied, colorized
through :class:`~colorize_core.inference.colorizer.Colorizer` at each temperature, and written atomically
(temporary file, then rename) with its EXIF and ICC metadata where the format allows. An
existing output is kept unless ``overwrite``; an unreadable input is skipped with its reason
and the others go on.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from colorize_core.constants import DEFAULT_MAX_PIXELS
from colorize_core.images import ImageError, load_pixels, is_image_path, open_image
from colorize_core.inference.colorizer import Colorizer
from colorize_core.io import atomic_output, safe_join
from colorize_core.progress import progress

log = logging.getLogger(__name__)

#: Output formats by name, and the formats ``same`` may keep (others become PNG).
FORMATS = {"png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg")}
SAME_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
#: Formats that PIL can write EXIF / ICC metadata into.
EXIF_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP"}
ICC_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP"}
SHEET_HEIGHT = 512


@dataclass
class PhotoOptions:
    temperatures: list[float]  # one output per temperature
    out_dir: Path | None = None  # None: beside each input
    suffix: str = "_color"
    format: str = "same"  # png | jpg | same
    sheet: bool = False  # also write input + every T side by side
    overwrite: bool = False
    recursive: bool = False
    batch_size: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Job:
    """One input and the files it becomes."""

    source: Path
    outputs: list[Path]  # one per temperature
    sheet: Path | None


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)  # outputs already there, kept
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    seconds: float = 0.0

    def report(self) -> str:
        per_image = f", {self.seconds / len(self.done):.2f} s per image" if self.done else ""
        lines = [
            f"colorized {len(self.done)} image(s) in {self.seconds:.1f} s{per_image}; "
            f"{len(self.existing)} already done (kept; --overwrite redoes them); {len(self.skipped)} skipped"
        ]
        lines += [f"  skipped {source}: {reason}" for source, reason in self.skipped]
        return "\n".join(lines)


def find_inputs(inputs: list[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """(image, folder its output path is relative to) for every file and folder given.

    Files are taken as given (a non-image is reported when read); folders contribute their files
    with image extensions, and their sub-folders' with ``recursive``.
    """
    found = []
    for item in inputs:
        if item.is_dir():
            pattern = item.rglob("*") if recursive else item.glob("*")
            found += [(p, item) for p in sorted(pattern) if p.is_file() and is_image_path(p)]
        else:
            found.append((item, item.parent))
    return found


def output_extension(source_format: str | None, choice: str) -> tuple[str, str]:
    """(PIL format, extension) for an output."""
    if choice == "same":
        if source_format in SAME_FORMATS:
            return source_format, SAME_FORMATS[source_format]
        return FORMATS["png"]
    return FORMATS[choice]


def temperature_tag(T: float) -> str:
    return f"_T{T:g}"


def plan_job(source: Path, base: Path, options: PhotoOptions, extension: str) -> Job:
    """Output paths of one input; with ``out_dir`` they mirror the input's place under ``base``."""
    if options.out_dir is None:
        folder = source.parent
    else:
        relative = source.parent.resolve().relative_to(base.resolve()) if source.parent != base else Path()
        folder = safe_join(options.out_dir, relative)
    many = len(options.temperatures) > 1
    stem = source.stem + options.suffix
    outputs = [folder / f"{stem}{temperature_tag(T) if many else ''}{extension}" for T in options.temperatures]
    sheet = folder / f"{stem}_sheet{extension}" if options.sheet else None
    return Job(source, outputs, sheet)


def _fonts() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=22)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def contact_sheet(picture: Image.Image, colours: list[np.ndarray], temperatures: list[float]) -> Image.Image:
    """The input and each colorization side by side, at most 512 pixels high, labelled."""
    height = min(SHEET_HEIGHT, picture.height)
    width = max(1, round(picture.width * height / picture.height))
    panels = [picture.convert("RGB")] + [Image.fromarray(c) for c in colours]
    labels = ["input"] + [f"T = {T:g}" for T in temperatures]
    label_height = 32
    sheet = Image.new("RGB", (width * len(panels), height + label_height), "white")
    draw = ImageDraw.Draw(sheet)
    font = _fonts()
    for i, (panel, label) in enumerate(zip(panels, labels)):
        sheet.paste(panel.resize((width, height), Image.Resampling.BICUBIC), (i * width, 0))
        draw.text((i * width + 8, height + 4), label, fill="black", font=font)
    return sheet


def encode(image: Image.Image, pil_format: str, metadata: dict) -> bytes:
    """Encode an output image with the input's EXIF (orientation already applied) and ICC profile."""
    kwargs = {}
    if metadata.get("exif") and pil_format in EXIF_FORMATS:
        kwargs["exif"] = metadata["exif"]
    if metadata.get("icc_profile") and pil_format in ICC_FORMATS:
        kwargs["icc_profile"] = metadata["icc_profile"]
    if pil_format == "JPEG":
        kwargs.update(quality=95, subsampling=0)
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **kwargs)
    return buffer.getvalue()


def write_atomically(data: bytes, path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    with atomic_output(path, "wb") as f:
        f.write(data)


def metadata_of(picture: Image.Image) -> dict:
    """EXIF (orientation already applied to the pixels) and ICC profile to copy into outputs."""
    return {"exif": picture.info.get("exif"), "icc_profile": picture.info.get("icc_profile")}


def colorize_files(inputs: list[Path], colorizer: Colorizer, options: PhotoOptions) -> Summary:
    """Colorize every input file or folder; never raises for a bad image."""
    summary = Summary()
    start = time.perf_counter()
    found = find_inputs(inputs, options.recursive)
    pending: list[tuple[Job, Image.Image, str, dict]] = []

    def flush() -> None:
        results = colorizer.colorize_batch([p for _, p, _, _ in pending], options.temperatures)
        for (job, picture, pil_format, metadata), colours in zip(pending, results):
            for path, rgb in zip(job.outputs, colours):
                write_atomically(encode(Image.fromarray(rgb), pil_format, metadata), path)
            if job.sheet is not None:
                sheet = contact_sheet(picture, colours, options.temperatures)
                write_atomically(encode(sheet, pil_format, {}), job.sheet)
            summary.done.append(job.source)
        pending.clear()

    with progress(found, desc="colorize", unit="img", disable=len(found) < 2) as bar:
        for source, base in bar:
            try:
                with open_image(source, options.max_pixels) as image:
                    pil_format, extension = output_extension(image.format, options.format)
                    job = plan_job(source, base, options, extension)
                    targets = [*job.outputs, *([job.sheet] if job.sheet else [])]
                    clashes = [t for t in targets if t.exists()] if not options.overwrite else []
                    if clashes and len(clashes) == len(targets):
                        summary.existing.append(source)
                        continue
                    if clashes:
                        summary.skipped.append((str(source), f"{clashes[0]} exists; --overwrite replaces it"))
                        continue
                    picture = load_pixels(image)
            except ImageError as error:
                summary.skipped.append((str(source), str(error).removeprefix(f"{source}: ")))
                continue
            pending.append((job, picture, pil_format, metadata_of(picture)))
            if len(pending) >= options.batch_size:
                flush()
        if pending:
            flush()
    summary.seconds = time.perf_counter() - start
    return summary


def colorize_stream(colorizer: Colorizer, options: PhotoOptions, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """One image from ``stdin`` to ``stdout``: one temperature, or the contact sheet with ``sheet``.

    Raises
    ------
    ImageError
        when the stream is not a usable image.
    """
    data = stdin.read()
    if not data:
        raise ImageError("<stdin>: empty input")
    with open_image(io.BytesIO(data), options.max_pixels) as image:
        pil_format, _ = output_extension(image.format, options.format)
        picture = load_pixels(image)
    metadata = metadata_of(picture)
    colours = colorizer.colorize_batch([picture], options.temperatures)[0]
    image = contact_sheet(picture, colours, options.temperatures) if options.sheet else Image.fromarray(colours[0])
    stdout.write(encode(image, pil_format, {} if options.sheet else metadata))
    stdout.flush()

