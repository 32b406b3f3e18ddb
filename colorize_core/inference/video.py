"""``colorize video``: a film in colour, its sound and subtitles unchanged, read and written by PyAV.

The frames stream through: decoded one network batch at a time, colorized by
:meth:`Colorizer.colorize_batch` (the code path of ``colorize photo``: the same network view, the
same full-resolution L joined with the upsampled ab, composed by the compiled kernel as a folder's
photos are), their log-probabilities averaged over time
in between (:mod:`colorize_core.inference.temporal`; ``smooth`` 0 leaves them alone), encoded and
written at once. The audio and subtitle packets are copied as they are (remuxed, not re-encoded)
where the output container can hold them. The output keeps the input's frame count, timestamps
(hence frame rate and sync), size and pixel aspect; it is H.264 in MP4 by default, FFV1 (lossless
RGB) with ``lossless``, and is written to a temporary file renamed at the end, so an interrupted
run leaves no partial output. A truncated or damaged input gives every frame that decodes, and
the summary says where it stopped, what FFmpeg reported and where frames are missing.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import av.logging
import numpy as np
from PIL import Image

from colorize_core.constants import DEFAULT_SMOOTHING_SECONDS, VIDEO_CRF, VIDEO_END_TOLERANCE_SECONDS
from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.temporal import TemporalAverage
from colorize_core.io import atomic_output, remove_stale_temporaries
from colorize_core.progress import progress

#: Output containers by the output's extension (FFmpeg's muxer names).
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: FFmpeg demuxers that read still images or text, not films: refused (so is every ``*_pipe``
#: demuxer, FFmpeg's readers of one image file: ``png_pipe``, ``jpeg_pipe``, ...).
STILL_DEMUXERS = ("image2", "tty")
#: Encoders: (codec, pixel format when both sides are even, pixel format otherwise, options).
ENCODERS = {
    "h264": ("libx264", "yuv420p", "yuv444p", {"crf": str(VIDEO_CRF)}),
    "ffv1": ("ffv1", "bgr0", "bgr0", {}),
}
#: A damaged input's gaps (frames missing) are reported when longer than this many frame intervals ...
GAP_INTERVALS = 1.5
#: ... the first few of them.
MAX_GAPS_LISTED = 3
#: Suffix of the default output name, ``<input stem>_color.mp4`` beside the input.
DEFAULT_SUFFIX = "_color"
DEFAULT_EXTENSION = ".mp4"


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file."""


@dataclass
class VideoOptions:
    temperature: float
    smooth: float = DEFAULT_SMOOTHING_SECONDS  # time constant in seconds; 0 = every frame on its own
    batch_size: int = 1  # frames per network batch
    lossless: bool = False  # FFV1 (RGB, lossless) instead of H.264
    overwrite: bool = False


@dataclass
class VideoSummary:
    source: Path
    out: Path
    frames: int = 0  # colorized and written
    seconds: float = 0.0
    copied: list[str] = field(default_factory=list)  # "audio stream 1 (aac)"
    dropped: list[str] = field(default_factory=list)  # streams not copied, with the reason
    smoothed: bool = True  # whether the log-probabilities were averaged over time
    cuts: int = 0  # scene cuts that restarted the average
    stopped: str = ""  # why the input ended early ("" when it was read to its end)
    undecodable: int = 0  # packets of the video stream that failed to decode
    errors: list[str] = field(default_factory=list)  # FFmpeg's complaints while reading the input
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (from, to) seconds without frames
    last_time: float | None = None  # of the last frame read, seconds

    @property
    def damaged(self) -> bool:
        """Whether the input could not be read whole."""
        return bool(self.stopped or self.undecodable or self.errors)

    def report(self) -> str:
        rate = f" ({self.frames / self.seconds:.1f} frames/s)" if self.seconds > 0 else ""
        copied = f"; copied {', '.join(self.copied)}" if self.copied else ""
        cuts = f"; {self.cuts} scene cut(s)" if self.smoothed else ""
        lines = [f"colorized {self.frames} frame(s) of {self.source} in {self.seconds:.1f} s{rate} -> {self.out}"
                 f"{cuts}{copied}"]
        lines += [f"  not copied: {reason}" for reason in self.dropped]
        if self.undecodable:
            lines.append(f"  {self.source}: {self.undecodable} damaged video packet(s) skipped")
        if self.errors:
            lines.append(f"  {self.source}: damaged: FFmpeg reported {len(self.errors)} error(s) reading it, "
                         f"the first: {self.errors[0]}")
        if self.errors and self.gaps:
            listed = ", ".join(f"{start:.2f} s to {end:.2f} s" for start, end in self.gaps[:MAX_GAPS_LISTED])
            more = f" and {len(self.gaps) - MAX_GAPS_LISTED} more" if len(self.gaps) > MAX_GAPS_LISTED else ""
            lines.append(f"  {self.source}: no frames from {listed}{more}")
        if self.stopped:
            lines.append(f"  {self.source}: {self.stopped}")
        return "\n".join(lines)


def default_output(source: Path) -> Path:
    return source.with_name(source.stem + DEFAULT_SUFFIX + DEFAULT_EXTENSION)


def check_output(source: Path, out: Path, overwrite: bool) -> str:
    """The output's FFmpeg format name; raises VideoError when it may not be written."""
    extension = out.suffix.lower()
    if extension not in OUTPUT_FORMATS:
        raise VideoError(f"{out}: the output must end in {', '.join(OUTPUT_FORMATS)} (the container is chosen by it)")
    if out.is_dir():
        raise VideoError(f"{out}: is a folder")
    if out.exists() and source.exists() and out.samefile(source):  # the same path, a link or a hard link
        raise VideoError(f"{out}: the output would replace the input; choose another --out")
    if out.exists() and not overwrite:
        raise VideoError(f"{out} exists; --overwrite replaces it")
    return OUTPUT_FORMATS[extension]


def open_video(source: Path) -> av.container.InputContainer:
    """Open a film for reading; raises VideoError in one line for anything that is not one."""
    if not source.exists():
        raise VideoError(f"{source}: no such file")
    if not source.is_file():
        raise VideoError(f"{source}: not a regular file")
    try:
        container = av.open(str(source), metadata_errors="replace")
    except av.FFmpegError as error:
        raise VideoError(f"{source}: not a video that FFmpeg can read ({error.strerror or error})") from None
    name = container.format.name
    if name in STILL_DEMUXERS or name.endswith("_pipe"):
        container.close()
        kind = "text" if name == "tty" else f"a still image ({name})"
        raise VideoError(f"{source}: {kind}, not a video; `colorize photo` colorizes images")
    if not container.streams.video:
        container.close()
        raise VideoError(f"{source}: no video stream ({name} with {len(container.streams)} other stream(s))")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.name in ("ansi", "none"):
        container.close()
        raise VideoError(f"{source}: its video codec cannot be decoded by this FFmpeg")
    if not stream.codec_context.width or not stream.codec_context.height:
        container.close()
        raise VideoError(f"{source}: its video stream ({stream.codec_context.name}) states no frame size")
    return container


def expected_frames(stream: av.video.stream.VideoStream, duration: float | None) -> int | None:
    """The number of frames the input says it holds (for the progress bar), if it says."""
    if stream.frames:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    return round(duration * rate) if duration and rate else None


def stated_duration(container: av.container.InputContainer, stream) -> float | None:
    """Seconds of video the input states: the stream's own duration, else the container's."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def plan_copies(container: av.container.InputContainer, output: av.container.OutputContainer, source: Path,
                out: Path, summary: VideoSummary) -> dict[int, av.stream.Stream]:
    """Output streams for the input's audio and subtitle streams: input index -> output stream.

    Raises
    ------
    VideoError
        when an audio stream cannot go into the output's container (subtitles that cannot are
        left out, and said so).
    """
    copies = {}
    for stream in container.streams:
        if stream.type == "video" and stream.index == container.streams.video[0].index:
            continue
        codec = stream.codec_context.name if stream.codec_context is not None else stream.type
        what = f"{stream.type} stream {stream.index} ({codec})"
        if stream.type not in ("audio", "subtitle"):
            summary.dropped.append(f"{what}: only the first video, the audio and subtitle streams are kept")
        elif codec not in output.supported_codecs:
            if stream.type == "audio":
                raise VideoError(f"{source}: its {what} cannot be copied into {out.suffix}; choose --out NAME.mkv")
            summary.dropped.append(f"{what}: {out.suffix} cannot hold it (.mkv can hold most)")
        else:
            copies[stream.index] = output.add_stream_from_template(stream)
            summary.copied.append(what)
    return copies


def add_video_stream(output: av.container.OutputContainer, stream, lossless: bool, out: Path):
    """The output's video stream: the input's size, pixel aspect, frame rate and time base."""
    codec, even_format, odd_format, options = ENCODERS["ffv1" if lossless else "h264"]
    if codec not in output.supported_codecs:
        raise VideoError(f"{out}: {out.suffix} cannot hold {codec}; choose .mkv")
    context = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    encoded = output.add_stream(codec, rate=rate, options=dict(options))
    encoded.width, encoded.height = context.width, context.height
    encoded.pix_fmt = even_format if context.width % 2 == 0 and context.height % 2 == 0 else odd_format
    encoded.time_base = stream.time_base or 1 / rate
    encoded.codec_context.time_base = encoded.time_base
    if context.sample_aspect_ratio:
        encoded.codec_context.sample_aspect_ratio = context.sample_aspect_ratio
    if not lossless:  # what PyAV's conversion of the RGB frames in encode() does (swscale's default)
        encoded.codec_context.colorspace = av.video.reformatter.Colorspace.ITU601
        encoded.codec_context.color_range = av.video.reformatter.ColorRange.MPEG
    return encoded


def decoded_frames(container: av.container.InputContainer, copies: dict[int, av.stream.Stream],
                   output: av.container.OutputContainer, summary: VideoSummary) -> Iterator[av.VideoFrame]:
    """The video frames in presentation order, while the packets of the copied streams are muxed
    unchanged on the way; stops, saying why in ``summary.stopped``, where the input cannot be read on."""
    video = container.streams.video[0]
    try:
        for packet in container.demux(video, *(container.streams[i] for i in copies)):
            if packet.stream.index != video.index:
                if packet.dts is not None:  # the demuxer's empty end-of-stream packets carry none
                    packet.stream = copies[packet.stream.index]
                    output.mux(packet)
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                summary.undecodable += 1
                continue
            yield from frames
    except av.FFmpegError as error:
        summary.stopped = f"reading stopped ({error.strerror or error})"
        try:
            yield from video.codec_context.decode(None)  # the frames still inside the decoder
        except av.FFmpegError:
            pass


@contextmanager
def ffmpeg_errors(summary: VideoSummary, ignore: tuple[str, ...]) -> Iterator[None]:
    """Collect FFmpeg's error messages (from every thread) into ``summary.errors``, but those of
    the components named in ``ignore`` (the output's encoder and muxer)."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=False) as logs:
            yield
    finally:
        av.logging.set_level(level)
        summary.errors += [f"{name}: {message.strip()}" for severity, name, message in logs
                           if severity <= av.logging.ERROR and name not in ignore]


def frame_time(frame: av.VideoFrame, index: int, rate: Fraction) -> float:
    """Presentation time in seconds; by its index when the frame carries no timestamp."""
    return float(frame.time) if frame.time is not None else index / float(rate)


def rgb_of(frame: av.VideoFrame, width: int, height: int) -> Image.Image:
    """A decoded frame as 8-bit sRGB at the stream's size (the colour matrix its stream states)."""
    return frame.reformat(width=width, height=height, format="rgb24").to_image()


def encode_frames(stream, rgb_frames: Iterable[tuple[np.ndarray, int]], output: av.container.OutputContainer) -> None:
    """Encode (H, W, 3) uint8 frames at their timestamps (in the input's time base) and mux them."""
    for rgb, pts in rgb_frames:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts
        frame.time_base = stream.codec_context.time_base
        output.mux(stream.encode(frame))


def colorized_batches(colorizer: Colorizer, frames: Iterable[tuple[Image.Image, float]], temperature: float,
                      average: TemporalAverage, batch_size: int) -> Iterator[list[np.ndarray]]:
    """Colorize frames in order, ``batch_size`` at a time, their log-probabilities averaged over time.

    Parameters
    ----------
    frames : (image, presentation time in seconds), consumed lazily: one batch is held at a time

    Yields
    ------
    Each batch's colour frames, (H, W, 3) uint8, in order.
    """
    batch: list[tuple[Image.Image, float]] = []

    def flush() -> list[np.ndarray]:
        images, times = zip(*batch)
        smoothed = functools.partial(average, times=times)
        batch.clear()
        kernel = colorizer.compiled is not False  # a film is many frames: composed as a folder of photos is
        return [colours[0] for colours in colorizer.colorize_batch(images, [temperature], smoothed, kernel)]

    for item in frames:
        batch.append(item)
        if len(batch) >= batch_size:
            yield flush()
    if batch:
        yield flush()


def frames_with_times(decoded: Iterable[av.VideoFrame], width: int, height: int, rate: Fraction, time_base: Fraction,
                      timestamps: list[int], summary: VideoSummary) -> Iterator[tuple[Image.Image, float]]:
    """Each decoded frame as RGB with its time in seconds; appends its timestamp (in ``time_base``,
    increasing, as the encoder needs) to ``timestamps``, its time to ``summary.last_time`` and the
    gaps before it to ``summary.gaps``."""
    previous = None
    for index, frame in enumerate(decoded):
        pts = frame.pts if frame.pts is not None else round(index / rate / time_base)
        pts = pts if previous is None or pts > previous else previous + 1
        timestamps.append(pts)
        previous = pts
        seconds = frame_time(frame, index, rate)
        if summary.last_time is not None and seconds - summary.last_time > GAP_INTERVALS / float(rate):
            summary.gaps.append((summary.last_time, seconds))
        summary.last_time = seconds
        yield rgb_of(frame, width, height), seconds


def colorize_video(source: Path, out: Path | None, colorizer: Colorizer, options: VideoOptions) -> VideoSummary:
    """Colorize a film into ``out`` (default ``<stem>_color.mp4`` beside it); see the module's docstring.

    Raises
    ------
    VideoError
        when the input is no readable film, the output may not be written, or no frame decodes.
    """
    out = default_output(source) if out is None else out
    output_format = check_output(source, out, options.overwrite)
    summary = VideoSummary(source, out, smoothed=options.smooth > 0)
    start = time.perf_counter()
    average = TemporalAverage(options.smooth)
    with open_video(source) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        duration = stated_duration(container, video)
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        if out.parent.is_dir():
            remove_stale_temporaries(out.parent)
        with atomic_output(out) as file, av.open(file, "w", format=output_format) as output:
            encoded = add_video_stream(output, video, options.lossless, out)
            copies = plan_copies(container, output, source, out, summary)
            timestamps: list[int] = []  # of the frames read but not yet encoded
            decoded = decoded_frames(container, copies, output, summary)
            frames = frames_with_times(decoded, video.codec_context.width, video.codec_context.height, rate,
                                       encoded.time_base, timestamps, summary)
            with ffmpeg_errors(summary, ignore=(encoded.codec_context.name, output_format)), progress(
                total=expected_frames(video, duration), desc=source.name, unit="frame"
            ) as bar:
                for colours in colorized_batches(colorizer, frames, options.temperature, average, options.batch_size):
                    encode_frames(encoded, zip(colours, timestamps[: len(colours)]), output)
                    del timestamps[: len(colours)]
                    summary.frames += len(colours)
                    bar.update(len(colours))
            if summary.frames == 0:
                why = f" ({summary.stopped})" if summary.stopped else ""
                raise VideoError(f"{source}: no frame could be decoded{why}")
            output.mux(encoded.encode(None))  # the frames still inside the encoder
    summary.cuts = len(average.cuts)
    if summary.stopped:
        summary.stopped += f" after {summary.frames} frame(s), at {summary.last_time:.2f} s"
    elif duration and summary.last_time + 1 / float(rate) < duration - VIDEO_END_TOLERANCE_SECONDS:
        end = summary.last_time + 1 / float(rate)
        summary.stopped = f"the input ends early: frames up to {end:.2f} s of its stated {duration:.2f} s decoded"
    summary.seconds = time.perf_counter() - start
    return summary
