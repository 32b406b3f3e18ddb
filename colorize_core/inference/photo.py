"""``colorize photo``: colorize your own photos, files, folders or a stream, at full resolution.

Every input is read with the header check of :mod:`colorize_core.images` (a file that claims
more pixels than the limit is refused before decoding), its EXIF orientation applied, colorized
through :class:`~colorize_core.inference.colorizer.Colorizer` at each temperature, and written atomically
(temporary file, then rename) with its EXIF and ICC metadata where the format allows. An
existing output is kept unless ``overwrite``; an unreadable input is skipped with its reason
and the others go on. Files and folders go through :mod:`colorize_core.inference.pipeline`:
decoding, the network and composing with encoding overlap in threads, and the outputs are those of
one image at a time. A run that composes more than one image or temperature uses the compiled
composition (:mod:`colorize_core.inference.compose_kernel`).
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from colorize_core.constants import DEFAULT_MAX_PIXELS
from colorize_core.images import ImageError, is_image_path, load_pixels, open_image
from colorize_core.inference.colorizer import Colorizer, View
from colorize_core.inference.pipeline import PipelineSizes, network_streams, run_pipeline
from colorize_core.io import atomic_write_bytes, remove_stale_temporaries, safe_join
from colorize_core.progress import progress

log = logging.getLogger(__name__)

#: Output formats by name, and the formats ``same`` may keep (others become PNG).
FORMATS = {"png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg")}
SAME_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
#: Formats that PIL can write EXIF / ICC metadata into.
EXIF_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP"}
ICC_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP"}
SHEET_HEIGHT = 512
#: JPEG outputs: full-resolution chroma at quality 95 (``encode``'s default).
JPEG_SUBSAMPLING, JPEG_QUALITY = "4:4:4", 95
#: libjpeg's limit on either side of a JPEG (JPEG_MAX_DIMENSION), Pillow's and simplejpeg's alike.
JPEG_MAX_SIDE = 65_500
#: Written into every output (PNG text / EXIF Software tag), so that a re-run over the same folder
#: recognises its own outputs and leaves them alone.
OUTPUT_MARKER = "colorize (github: colorize_core)"
EXIF_SOFTWARE = 0x0131
#: Stdin is refused when its first bytes are no image header, and read no further than this.
STREAM_HEAD_BYTES = 1 << 20
MAX_STREAM_BYTES = 512 << 20


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
    own: list[Path] = field(default_factory=list)  # outputs of an earlier run found among the inputs
    seconds: float = 0.0

    def report(self) -> str:
        per_image = f", {self.seconds / len(self.done):.2f} s per image" if self.done else ""
        lines = [
            f"colorized {len(self.done)} image(s) in {self.seconds:.1f} s{per_image}; "
            f"{len(self.existing)} already done (kept; --overwrite redoes them); {len(self.skipped)} skipped"
            + (f"; {len(self.own)} earlier output(s) of colorize left alone" if self.own else "")
        ]
        lines += [f"  skipped {source}: {reason}" for source, reason in self.skipped]
        return "\n".join(lines)


def find_inputs(inputs: list[Path], recursive: bool, summary: Summary) -> list[tuple[Path, Path]]:
    """(image, folder its output path is relative to) for every file and folder given.

    Files are taken as given (a non-image is reported when read); folders contribute their files
    with image extensions, and their sub-folders' with ``recursive``. A folder without any is
    reported in ``summary`` (with a hint when its sub-folders hold images).
    """
    found = []
    for item in inputs:
        if not item.is_dir():
            found.append((item, item.parent))
            continue
        pattern = item.rglob("*") if recursive else item.glob("*")
        images = [(p, item) for p in sorted(pattern) if p.is_file() and is_image_path(p)]
        if not images:
            deeper = not recursive and any(p.is_file() and is_image_path(p) for p in item.rglob("*"))
            reason = "no images at its top level; -r descends into its sub-folders" if deeper else "no images"
            summary.skipped.append((str(item), reason))
        found += images
    return found


def named_as_output(source: Path, suffix: str) -> bool:
    """Whether a file's name is that of an output: ``<stem><suffix>[_T<t>][_sheet]``."""
    return bool(suffix) and re.search(re.escape(suffix) + r"(_T[0-9.e+-]+)?(_sheet)?$", source.stem) is not None


def is_own_output(image: Image.Image, source: Path, suffix: str) -> bool:
    """Whether an opened input is an output of this command: by its marker (header only), else by
    its name, for formats without metadata."""
    if image.info.get("Software") == OUTPUT_MARKER:  # PNG text chunk
        return True
    if image.info.get("exif"):  # raw EXIF from the header (getexif() would decode a PNG's pixels)
        exif = Image.Exif()
        exif.load(image.info["exif"])
        if exif.get(EXIF_SOFTWARE) == OUTPUT_MARKER:
            return True
    if getattr(image, "tag_v2", {}).get(EXIF_SOFTWARE) == OUTPUT_MARKER:  # TIFF
        return True
    return named_as_output(source, suffix)


def suffix_problem(suffix: str) -> str:
    """Why a ``--suffix`` of output names is refused ("" when it is fine): it may not leave the folder."""
    if any(sep and sep in suffix for sep in (os.sep, os.altsep)) or suffix in (".", ".."):
        return "may not contain a path separator"
    return ""


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
    if suffix_problem(options.suffix):
        raise ValueError(f"--suffix {options.suffix!r}: {suffix_problem(options.suffix)}")
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


@lru_cache(maxsize=16)
def exif_with_marker(exif: bytes | None) -> bytes:
    """An input's EXIF (None: none) with this project's Software tag, as bytes (about 1 ms to build:
    kept for the next photo with the same EXIF, such as none)."""
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    tags[EXIF_SOFTWARE] = OUTPUT_MARKER
    return tags.tobytes()


def encode(image: Image.Image, pil_format: str, metadata: dict, jpeg_subsampling: str = JPEG_SUBSAMPLING) -> bytes:
    """Encode an output image with the input's EXIF (orientation already applied) and ICC profile;
    a JPEG at quality 95 with full-resolution chroma unless ``jpeg_subsampling`` says otherwise
    (Pillow's "4:2:0": chroma at half resolution, a third less encoding time, for display)."""
    kwargs = {}
    if pil_format in EXIF_FORMATS:
        kwargs["exif"] = exif_with_marker(metadata.get("exif"))
    if pil_format == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("Software", OUTPUT_MARKER)
        kwargs["pnginfo"] = text
    if metadata.get("icc_profile") and pil_format in ICC_FORMATS:
        kwargs["icc_profile"] = metadata["icc_profile"]
    if pil_format == "JPEG":
        kwargs.update(quality=JPEG_QUALITY, subsampling=jpeg_subsampling)
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **kwargs)
    return buffer.getvalue()


def metadata_of(picture: Image.Image) -> dict:
    """EXIF (orientation already applied to the pixels) and ICC profile to copy into outputs."""
    return {"exif": picture.info.get("exif"), "icc_profile": picture.info.get("icc_profile")}


@dataclass
class Task:
    """One input on its way through the pipeline; what happened to it is recorded in ``events``."""

    index: int  # position among the inputs found: the summary lists inputs in this order
    job: Job
    pil_format: str
    picture: Image.Image | None = None  # kept only for the contact sheet
    metadata: dict = field(default_factory=dict)
    view: View | None = None


def colorize_files(
    inputs: list[Path], colorizer: Colorizer, options: PhotoOptions, sizes: PipelineSizes | None = None
) -> Summary:
    """Colorize every input file or folder; never raises for a bad image or an unwritable output.

    The inputs are planned here, in order (header, own outputs, refusals, existing outputs); then
    reader threads decode them, the network runs on batches of one network shape (on a CPU one
    stream per core), and writer threads compose, encode and write (:mod:`pipeline`). The outputs
    are those of one image at a time on as many cores as a stream: the same files and bytes whatever
    the threads' timing.

    Raises
    ------
    OSError
        only when ``options.out_dir`` cannot be created: then nothing could ever be written.
    """
    summary = Summary()
    start = time.perf_counter()
    if options.out_dir is not None:
        options.out_dir.mkdir(parents=True, exist_ok=True)
    found = find_inputs(inputs, options.recursive, summary)
    events: dict[int, list[tuple[str, object]]] = {}  # input index -> ("done" | "existing" | "own" | "skipped", ...)
    cleaned: set[Path] = set()  # output folders rid of a killed run's temporary files

    def record(index: int, kind: str, value: object) -> None:
        events.setdefault(index, []).append((kind, value))

    bar_lock = threading.Lock()

    def advance() -> None:
        """One input done (from the feeder thread, or this one)."""
        with bar_lock:
            bar.update()

    def plan() -> Iterator[Task]:
        """The tasks to colorize, in input order; the others recorded (header only, nothing decoded)."""
        # outputs may not land on an input (an earlier run's outputs, by their names, may be replaced)
        inputs_resolved = {source.resolve() for source, _ in found if not named_as_output(source, options.suffix)}
        planned: dict[Path, Path] = {}  # output -> the input it comes from, in this run
        for index, (source, base) in enumerate(found):
            try:
                with open_image(source, options.max_pixels) as image:
                    if is_own_output(image, source, options.suffix):
                        record(index, "own", source)
                        advance()
                        continue
                    pil_format, extension = output_extension(image.format, options.format)
                    if pil_format == "JPEG" and max(image.size) > JPEG_MAX_SIDE:
                        raise ImageError(
                            f"{source}: {image.width}x{image.height}, more than a JPEG holds ({JPEG_MAX_SIDE:,} "
                            "pixels a side); --format png writes it"
                        )
                job = plan_job(source, base, options, extension)
            except ImageError as error:
                record(index, "skipped", (str(source), str(error).removeprefix(f"{source}: ")))
                advance()
                continue
            except ValueError as error:  # an output path that leaves --out
                record(index, "skipped", (str(source), str(error)))
                advance()
                continue
            targets = [*job.outputs, *([job.sheet] if job.sheet else [])]
            reason = refusal(job, targets, inputs_resolved, planned)
            clashes = [t for t in targets if t.exists()] if not options.overwrite and not reason else []
            if not reason and clashes and len(clashes) < len(targets):
                reason = f"{clashes[0]} exists; --overwrite replaces it"
            if reason:
                record(index, "skipped", (str(source), reason))
            elif clashes:
                record(index, "existing", source)
            else:
                planned.update({t.resolve(): source for t in targets})
                yield Task(index, job, pil_format)
                continue
            advance()

    def read(task: Task) -> Task | None:
        """Decode (reader thread): the pixels, their metadata, the network view and the lightness."""
        source = task.job.source
        try:
            with open_image(source, options.max_pixels) as image:
                picture = load_pixels(image)
        except ImageError as error:
            record(task.index, "skipped", (str(source), str(error).removeprefix(f"{source}: ")))
            return None
        task.metadata = metadata_of(picture)
        task.view = colorizer.view(picture)
        task.picture = picture if options.sheet else None
        return task

    def infer(batch: list[Task]) -> list[list[np.ndarray]]:
        return colorizer.ab_batch([task.view for task in batch], options.temperatures)

    def write(image: Image.Image, pil_format: str, metadata: dict, path: Path) -> str:
        """Encode and write one output atomically; why it could not be written ("" when it was)."""
        data = encode(image, pil_format, metadata)
        try:
            if path.parent not in cleaned and path.parent.is_dir():
                remove_stale_temporaries(path.parent)
                cleaned.add(path.parent)
            atomic_write_bytes(path, data)
            return ""
        except OSError as error:
            return f"cannot write {path} ({error.strerror or error})"

    kernel = colorizer.uses_kernel(len(found) * len(options.temperatures))
    # several photos: the writer threads compose in parallel, each on one core (the network's
    # threads are disturbed less); one photo: its temperatures on every core
    kernel_threads = 1 if len(found) > 1 else None
    if kernel:
        colorizer.load_kernel_in_background()  # while the first photos are read and go through the network

    def finish(task: Task, grids: list[np.ndarray]) -> None:
        """Compose each temperature (writer thread), encoded and written by another thread while the
        next is composed; then the sheet. The first output that fails skips the input."""
        job, colours, writes = task.job, [], []
        for path, grid in zip(job.outputs, grids):
            colours.append(colorizer.compose(task.view.lightness, [grid], kernel, kernel_threads)[0])
            image = Image.fromarray(colours[-1])
            writes.append(encoders.submit(write, image, task.pil_format, task.metadata, path))
        task.view = None  # the lightness is no longer needed
        failed = [reason for reason in (w.result() for w in writes) if reason]
        if not failed and job.sheet is not None:
            sheet = contact_sheet(task.picture, colours, options.temperatures)
            failed = [reason for reason in [write(sheet, task.pil_format, {}, job.sheet)] if reason]
        if failed:
            record(task.index, "skipped", (str(job.source), failed[0]))
        else:
            record(task.index, "done", job.source)

    bar = progress(total=len(found), desc="colorize", unit="img", disable=len(found) < 2)
    sizes = sizes or PipelineSizes(
        batch_size=options.batch_size, streams=network_streams(colorizer.device.type, len(found))
    )
    with bar, ThreadPoolExecutor(sizes.writers, "encode") as encoders:
        key = lambda task: task.view.batch_key  # noqa: E731
        run_pipeline(plan(), read, key, infer, finish, sizes, advance)
    lists = {"done": summary.done, "existing": summary.existing, "own": summary.own, "skipped": summary.skipped}
    for index in sorted(events):
        for kind, value in events[index]:
            lists[kind].append(value)
    summary.seconds = time.perf_counter() - start
    return summary


def refusal(job: Job, targets: list[Path], inputs: set[Path], planned: dict[Path, Path]) -> str:
    """Why this job must not write its outputs ("" when it may): never over an input, never twice."""
    for target in targets:
        resolved = target.resolve()
        if resolved in inputs:
            return f"its output {target} would replace an input; choose another --suffix or --out"
        if resolved in planned:
            return f"its output {target} is also the output of {planned[resolved]}"
    return ""


def named_stream(data: bytes, name: str = "<stdin>") -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name  # how errors name it
    return stream


def check_stream_head(head: bytes, max_pixels: int, name: str = "<stdin>") -> None:
    """Refuse the first bytes of a stream (up to STREAM_HEAD_BYTES) unless they start with an image
    header that claims at most ``max_pixels``: garbage and bombs stop here, before the rest is read.

    Raises
    ------
    ImageError
        with a one-line reason naming ``name``.
    """
    if not head:
        raise ImageError(f"{name}: empty input (0 bytes)")
    with open_image(named_stream(head, name), max_pixels):
        pass  # the header alone


def read_stream(stdin: BinaryIO, max_pixels: int, limit: int = MAX_STREAM_BYTES) -> bytes:
    """The bytes of one image from a stream: refused after its first MiB when they hold no image
    header (or one over ``max_pixels``), and never read beyond ``limit`` bytes."""
    head = stdin.read(STREAM_HEAD_BYTES)
    check_stream_head(head, max_pixels)
    chunks, size = [head], len(head)
    while chunk := stdin.read(STREAM_HEAD_BYTES):
        size += len(chunk)
        if size > limit:
            raise ImageError(f"<stdin>: more than {limit >> 20} MiB; refused (save it to a file first)")
        chunks.append(chunk)
    return b"".join(chunks)


def colorize_stream(colorizer: Colorizer, options: PhotoOptions, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """One image from ``stdin`` to ``stdout``: one temperature, or the contact sheet with ``sheet``.

    Raises
    ------
    ImageError
        when the stream is not a usable image.
    """
    data = read_stream(stdin, options.max_pixels)
    with open_image(named_stream(data), options.max_pixels) as image:
        pil_format, _ = output_extension(image.format, options.format)
        picture = load_pixels(image)
    metadata = metadata_of(picture)
    colours = colorizer.colorize_batch([picture], options.temperatures)[0]
    image = contact_sheet(picture, colours, options.temperatures) if options.sheet else Image.fromarray(colours[0])
    data = encode(image, pil_format, {} if options.sheet else metadata)
    try:
        stdout.write(data)
        stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:  # a full disk behind the redirection, say
        raise OSError(error.errno, error.strerror, "<stdout>") from None
