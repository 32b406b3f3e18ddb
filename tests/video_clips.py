"""Small films made here from real photos: pans, zooms, cuts, film grain, a sine-tone sound track.

The photos come from ``../shared/data/imagenet-val`` (photos the bundled model never saw) when that
folder is there, else from those scikit-image ships. Every film is written with PyAV.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np
from PIL import Image

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val" / "val"
#: imagenet-val photos (or scikit-image's, where that folder is missing) used by the tests.
PHOTO_NAMES = ("n01530575/ILSVRC2012_val_00027507.JPEG", "n02504458/ILSVRC2012_val_00003538.JPEG")
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
SAMPLE_RATE = 16000
TONE_HZ = 440


def photo(index: int) -> np.ndarray:
    """A real colour photo, (H, W, 3) uint8: the index-th of imagenet-val's sorted photos when that
    folder is here, else of scikit-image's."""
    if SHARED_PHOTOS.is_dir():
        paths = sorted(SHARED_PHOTOS.glob("*/*.JPEG"))
        path = SHARED_PHOTOS / PHOTO_NAMES[index] if index < len(PHOTO_NAMES) else paths[(index * 97) % len(paths)]
        return np.asarray(Image.open(path).convert("RGB"))
    import skimage.data

    return getattr(skimage.data, SKIMAGE_PHOTOS[index % len(SKIMAGE_PHOTOS)])()


def fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The photo resized (cropped to the aspect ratio first) to cover width × height, with a
    margin of a quarter for pans and zooms."""
    image = Image.fromarray(rgb)
    scale = 1.25 * max(width / image.width, height / image.height)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC))


def still(rgb: np.ndarray, width: int, height: int, count: int) -> Iterator[np.ndarray]:
    big = fit(rgb, width, height)
    top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    for _ in range(count):
        yield big[top : top + height, left : left + width]


def pan(rgb: np.ndarray, width: int, height: int, count: int) -> Iterator[np.ndarray]:
    """A left-to-right pan, whole pixels per frame."""
    big = fit(rgb, width, height)
    top = (big.shape[0] - height) // 2
    for i in range(count):
        left = round(i * (big.shape[1] - width) / max(count - 1, 1))
        yield big[top : top + height, left : left + width]


def fast_pan(rgb: np.ndarray, width: int, height: int, count: int, speed: int) -> Iterator[np.ndarray]:
    """A left-to-right pan of ``speed`` pixels per frame over the photo resized to be wide enough."""
    wide = width + speed * (count - 1)
    image = Image.fromarray(rgb)
    tall = max(height, round(image.height * wide / image.width))
    big = np.asarray(image.resize((wide, tall), Image.Resampling.BICUBIC))
    top = (tall - height) // 2
    for i in range(count):
        yield big[top : top + height, i * speed : i * speed + width]


def zoom(rgb: np.ndarray, width: int, height: int, count: int) -> Iterator[np.ndarray]:
    """A zoom in towards the centre: ever smaller crops resized to the frame."""
    big = Image.fromarray(fit(rgb, width, height))
    for i in range(count):
        scale = 1 + 0.25 * i / max(count - 1, 1)
        w, h = big.width / scale, big.height / scale
        box = ((big.width - w) / 2, (big.height - h) / 2, (big.width + w) / 2, (big.height + h) / 2)
        yield np.asarray(big.resize((width, height), Image.Resampling.BILINEAR, box=box))


def grainy(frames: Iterable[np.ndarray], strength: float, seed: int = 0) -> Iterator[np.ndarray]:
    """Old-film noise: per-pixel grain (σ = strength levels) and a per-frame exposure flicker (± strength/2)."""
    rng = np.random.default_rng(seed)
    for rgb in frames:
        noise = rng.normal(0, strength, rgb.shape[:2])[..., None] + rng.uniform(-strength / 2, strength / 2)
        yield np.clip(rgb + noise, 0, 255).round().astype(np.uint8)


def sine_tone(seconds: float) -> np.ndarray:
    """A 440 Hz tone at SAMPLE_RATE, (1, samples) int16."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * TONE_HZ * t) * 12000).astype(np.int16)[None]


#: The subtitle that ``write_film(..., subtitle=True)`` shows for its first second.
SUBTITLE = b"A film in colour"


def write_film(path: Path, frames: Iterable[np.ndarray], fps: int = 12, audio: str | None = "aac",
               gray: bool = False, aspect: Fraction | None = None, crf: int = 18, subtitle: bool = False,
               codec: str = "libx264", pix_fmt: str | None = None) -> Path:
    """Write frames (H, W, 3) uint8 as H.264 (4:2:0; 4:4:4 for odd sizes; or ``codec`` in
    ``pix_fmt``) at ``fps``, with a sine tone of the same length in ``audio`` (aac, pcm_s16le, or
    None) and an SRT subtitle (``subtitle``; Matroska), into a container chosen by the file's extension."""
    frames = iter(frames)  # written as they come: a long film is never held
    first = next(frames)
    height, width = first.shape[:2]
    count = 0
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps, options={"crf": str(crf)} if codec == "libx264" else {})
        video.width, video.height = width, height
        video.pix_fmt = pix_fmt or ("yuv420p" if width % 2 == height % 2 == 0 else "yuv444p")  # 4:2:0 needs even sides
        if aspect:
            video.codec_context.sample_aspect_ratio = aspect
        sound = container.add_stream(audio, rate=SAMPLE_RATE, layout="mono") if audio else None
        if subtitle:
            text = av.Packet(SUBTITLE)
            text.stream = container.add_mux_stream("subrip")
            text.pts, text.dts, text.duration, text.time_base = 0, 0, 1000, Fraction(1, 1000)
            container.mux(text)
        for i, rgb in enumerate(itertools.chain([first], frames)):
            if gray:
                rgb = rgb.mean(-1, keepdims=True).round().repeat(3, -1).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            count += 1
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = sine_tone(count / fps)
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, samples.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(samples[:, start : start + chunk], format="s16", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the first video stream as (H, W, 3) uint8 sRGB."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def read_audio(path: Path) -> np.ndarray:
    """Every sample of the first audio stream, (channels, samples)."""
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    """(presentation time in seconds, bytes) of every packet of the first audio stream."""
    with av.open(str(path)) as container:
        packets = [packet for packet in container.demux(audio=0) if packet.size]
        return [(float(packet.pts * packet.time_base), bytes(packet)) for packet in packets]


def subtitle_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(subtitles=0) if packet.size]
