"""`colorize video`: flicker with and without the average over time, and frames per second.

    python benchmarks/bench_video.py [--photos 6] [--frames 48]

Flicker: a film made of imagenet-val photos (never seen in training), each as three one-second
shots (a still, a pan, a zoom) at 24 fps and 224×168, with old-film grain (σ = 6 levels) and
exposure flicker (± 3 levels), encoded in H.264 (crf 23); colorized by the bundled model through
`colorize video`'s code path with `--smooth 0` (every frame on its own) and the default, written
losslessly so that only the colorization is measured. Flicker is the mean |Δab| between
consecutive frames of a shot over the static pixels (those whose true L, before grain, is the same
in both frames). AuC (Zhang et al., colorize_core.evaluate.metrics.auc) is against the true ab of
each frame: over the still shots (the still photo), the moving ones (pans, zooms) and all frames.

Motion: the same six photos as fast pans (16 pixels per frame, 7 % of the width), with grain:
the AuC of the smoothed frames against per-frame decoding, since the average is not
motion-compensated.

Speed: a 640×480 pan of a photo (imagenet-sample), H.264 in and out, the bundled model at its
own view (224) on the CPU, batch 1; the network's share is the time inside `Colorizer.log_probs`
over the whole run, timed there.

Memory: peak RSS of the whole `colorize video` command on 640×480 films of 2 and 8 seconds: the
frames stream through, so the longer film must not need more (within 10 %).

Targets: smoothing at least halves the flicker; the still photo's AuC drops by at most 1 point;
peak memory flat in the film's length.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import rgb2lab

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the test films' builder
from common import SHARED, check, peak_rss_of, report, self_peak_rss_mib  # noqa: E402
from video_clips import fast_pan, grainy, pan, photo, read_frames, still, write_film, zoom  # noqa: E402

from colorize_core.constants import DEFAULT_SMOOTHING_SECONDS  # noqa: E402
from colorize_core.evaluate.metrics import auc  # noqa: E402
from colorize_core.inference.colorizer import Colorizer  # noqa: E402
from colorize_core.inference.video import VideoOptions, colorize_video  # noqa: E402

FLICKER_SIZE, FLICKER_FPS = (224, 168), 24
SPEED_SIZE, SPEED_FPS = (640, 480), 24
STATIC_L = 0.5  # a pixel is static when its true L changes by less than this between frames
FAST_PAN_PIXELS = 16  # per frame


def flicker_film(folder: Path, photos: int, grain: float) -> tuple[Path, list[np.ndarray], list[str], list[int]]:
    """The film, its clean frames (H, W, 3) uint8, each frame's kind of shot and shot number."""
    width, height = FLICKER_SIZE
    clean, kinds, shots = [], [], []
    for i in range(photos):
        picture = photo(2 + i)
        for kind, shot in (("still", still), ("pan", pan), ("zoom", zoom)):
            frames = list(shot(picture, width, height, FLICKER_FPS))
            clean += frames
            kinds += [kind] * len(frames)
            shots += [len(set(shots))] * len(frames)
    path = write_film(folder / "grainy.mkv", grainy(clean, grain), FLICKER_FPS, audio=None, crf=23)
    return path, clean, kinds, shots


def flicker_and_auc(out: Path, clean_lab: list[np.ndarray], kinds: list[str], shots: list[int]) -> dict[str, float]:
    colours = [rgb2lab(rgb / 255.0) for rgb in read_frames(out)]
    assert len(colours) == len(clean_lab)
    total, count = 0.0, 0
    for t in range(1, len(colours)):
        if shots[t] != shots[t - 1]:
            continue
        static = np.abs(clean_lab[t][..., 0] - clean_lab[t - 1][..., 0]) < STATIC_L
        change = np.linalg.norm(colours[t][..., 1:] - colours[t - 1][..., 1:], axis=-1)
        total, count = total + change[static].sum(), count + static.sum()
    aucs = [auc(colour[..., 1:], truth[..., 1:]) for colour, truth in zip(colours, clean_lab)]
    return {
        "flicker": total / count,
        "static_pixel_share": count / (len(colours) * colours[0][..., 0].size),
        "auc_still": float(np.mean([a for a, kind in zip(aucs, kinds) if kind == "still"])),
        "auc_moving": float(np.mean([a for a, kind in zip(aucs, kinds) if kind != "still"])),
        "auc_all": float(np.mean(aucs)),
    }


def fast_pan_aucs(folder: Path, colorizer: Colorizer, photos: int, grain: float) -> dict[str, float]:
    """Mean AuC against the true ab of fast pans, every frame on its own and smoothed."""
    width, height = FLICKER_SIZE
    clean = [f for i in range(photos) for f in fast_pan(photo(2 + i), width, height, FLICKER_FPS, FAST_PAN_PIXELS)]
    film = write_film(folder / "fast_pans.mkv", grainy(clean, grain), FLICKER_FPS, audio=None, crf=23)
    truth = [rgb2lab(rgb / 255.0)[..., 1:] for rgb in clean]
    aucs = {}
    for name, smooth in (("per_frame", 0.0), ("smoothed", DEFAULT_SMOOTHING_SECONDS)):
        out = folder / f"fast_{name}.mkv"
        colorize_video(film, out, colorizer, VideoOptions(colorizer.default_T, smooth=smooth, lossless=True))
        colours = [rgb2lab(rgb / 255.0)[..., 1:] for rgb in read_frames(out)]
        aucs[f"fast_pan_{name}_auc"] = float(np.mean([auc(c, t) for c, t in zip(colours, truth, strict=True)]))
    return aucs


def speed_film(folder: Path, frames: int, name: str = "640x480.mkv") -> Path:
    source = max((SHARED / "imagenet-sample" / "train").glob("*/*.JPEG"), key=lambda p: p.stat().st_size)
    rgb = np.asarray(Image.open(source).convert("RGB"))
    return write_film(folder / name, pan(rgb, *SPEED_SIZE, frames), SPEED_FPS, audio="aac", crf=20)


def command_peak_mib(film: Path, out: Path) -> float:
    """Peak resident memory of `colorize video FILM --out OUT` (bundled model, CPU), MiB."""
    command = [str(Path(sys.executable).parent / "colorize"), "video", str(film), "--out", str(out), "--device", "cpu"]
    return peak_rss_of(command, env={"TQDM_DISABLE": "1"})[0]


def timed_network(colorizer: Colorizer) -> list[float]:
    """Wrap the colorizer's network call; the returned list collects the seconds of each call."""
    seconds: list[float] = []
    network = colorizer.log_probs

    @functools.wraps(network)
    def timed(lightness):
        start = time.perf_counter()
        result = network(lightness)
        seconds.append(time.perf_counter() - start)
        return result

    colorizer.log_probs = timed
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=6, help="photos in the flicker film (3 one-second shots each)")
    parser.add_argument("--frames", type=int, default=48, help="frames of the 640×480 speed film")
    parser.add_argument("--grain", type=float, default=6.0, help="σ of the grain in levels (exposure flicker ± half)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-video-"))
    m: dict = {"load_average_1min_at_start": round(os.getloadavg()[0], 2)}
    try:
        # first, while this process is small: a child's peak RSS counts its parent's at the fork
        short, long = speed_film(folder, 2 * SPEED_FPS), speed_film(folder, 8 * SPEED_FPS, "640x480_long.mkv")
        m["peak_rss_2s_film_mib"] = command_peak_mib(short, folder / "short.mp4")
        m["peak_rss_8s_film_mib"] = command_peak_mib(long, folder / "long.mp4")
        m["peak_rss_8s_over_2s"] = m["peak_rss_8s_film_mib"] / m["peak_rss_2s_film_mib"]
        m["benchmark_process_peak_mib_then"] = self_peak_rss_mib()
        colorizer = Colorizer.pretrained("cpu")
        film, clean, kinds, shots = flicker_film(folder, args.photos, args.grain)
        clean_lab = [rgb2lab(rgb / 255.0) for rgb in clean]
        m["flicker_film_frames"], m["grain_sigma"] = len(clean), args.grain
        for name, smooth in (("per_frame", 0.0), ("smoothed", DEFAULT_SMOOTHING_SECONDS)):
            out = folder / f"{name}.mkv"
            options = VideoOptions(colorizer.default_T, smooth=smooth, lossless=True)
            summary = colorize_video(film, out, colorizer, options)
            for key, value in flicker_and_auc(out, clean_lab, kinds, shots).items():
                m[f"{name}_{key}"] = value
            m[f"{name}_scene_cuts"] = summary.cuts
        m["smoothing_seconds"] = DEFAULT_SMOOTHING_SECONDS
        m["flicker_smoothed_over_per_frame"] = m["smoothed_flicker"] / m["per_frame_flicker"]
        m["auc_still_change_points"] = 100 * (m["smoothed_auc_still"] - m["per_frame_auc_still"])
        m["auc_moving_change_points"] = 100 * (m["smoothed_auc_moving"] - m["per_frame_auc_moving"])
        m["auc_all_change_points"] = 100 * (m["smoothed_auc_all"] - m["per_frame_auc_all"])

        m.update(fast_pan_aucs(folder, colorizer, args.photos, args.grain))
        m["fast_pan_auc_change_points"] = 100 * (m["fast_pan_smoothed_auc"] - m["fast_pan_per_frame_auc"])

        speed = speed_film(folder, args.frames)
        network_seconds = timed_network(colorizer)
        summary = colorize_video(speed, folder / "speed.mp4", colorizer, VideoOptions(colorizer.default_T))
        m["speed_640x480_frames"] = summary.frames
        m["speed_640x480_frames_per_s"] = summary.frames / summary.seconds
        m["speed_640x480_network_share"] = sum(network_seconds) / summary.seconds
        m["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        checks = [
            check("flicker, smoothed / per frame", m["flicker_smoothed_over_per_frame"], 0.5, higher_is_better=False),
            check("AuC of the still photo, smoothed - per frame (points)", m["auc_still_change_points"], -1.0),
            check("peak memory, 8 s film / 2 s film", m["peak_rss_8s_over_2s"], 1.1, higher_is_better=False),
        ]
    finally:
        shutil.rmtree(folder)
    report("video", m, checks)


if __name__ == "__main__":
    main()
