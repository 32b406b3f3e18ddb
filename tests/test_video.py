"""`colorize video`: films made here from real photos (pans, a zoom, a cut, a sine-tone track) go
through the command with the bundled model; frames, timing, sound, lightness, smoothing, damage."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import run_until
from PIL import Image
from skimage.color import rgb2lab
from video_clips import (
    SUBTITLE,
    audio_packets,
    grainy,
    pan,
    photo,
    read_audio,
    read_frames,
    still,
    subtitle_packets,
    write_film,
    zoom,
)

from colorize_core.cli import main
from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.temporal import TemporalAverage, histogram_distance, lightness_histograms
from colorize_core.inference.video import colorized_batches

WIDTH, HEIGHT, FPS = 160, 120, 12
SHOT = 8  # frames per shot: pan, zoom, then a cut to another photo
CUT = 2 * SHOT  # index of the first frame after the cut


def film_frames(width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    first, second = photo(0), photo(1)
    return [*pan(first, width, height, SHOT), *zoom(first, width, height, SHOT), *still(second, width, height, SHOT)]


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> Path:
    """film.mkv (AAC, SRT subtitle, pixel aspect 4:3), pcm.mkv (PCM sound), grain.mkv (a grainy still)."""
    folder = tmp_path_factory.mktemp("films")
    frames = film_frames()
    write_film(folder / "film.mkv", frames, FPS, audio="aac", aspect=Fraction(4, 3), subtitle=True)
    write_film(folder / "pcm.mkv", frames, FPS, audio="pcm_s16le")
    write_film(folder / "grain.mkv", grainy(still(photo(0), WIDTH, HEIGHT, 16), 6.0), 24, audio=None, crf=23)
    return folder


#: The network's view of the frames in these tests (the bundled model's own is 224): a quarter of the work.
VIEW = "112"


def colorize(*argv: str) -> tuple[int, str]:
    """`colorize video ARGV` with the bundled model, seeing the frames at VIEW: (exit status, output)."""
    result = CliRunner().invoke(main, ["video", *map(str, argv), *(["--size", VIEW] if "--size" not in argv else [])])
    return result.exit_code, result.output


def lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb / 255.0)[..., 0]


def ab(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb / 255.0)[..., 1:]


def test_frame_count_size_rate_timing_and_pixel_aspect_are_kept(films, tmp_path):
    code, output = colorize(films / "film.mkv", "--out", tmp_path / "out.mp4")
    assert code == 0, output
    with av.open(str(films / "film.mkv")) as before, av.open(str(tmp_path / "out.mp4")) as after:
        source, result = before.streams.video[0], after.streams.video[0]
        assert (result.codec_context.name, after.format.name.split(",")[0]) == ("h264", "mov")
        assert (result.width, result.height) == (WIDTH, HEIGHT)
        assert result.guessed_rate == source.guessed_rate == FPS
        assert float(result.average_rate) == pytest.approx(FPS, rel=1e-3)  # the input's times are whole ms
        assert result.codec_context.sample_aspect_ratio == Fraction(4, 3)
        times_before = [frame.time for frame in before.decode(source)]
        times_after = [frame.time for frame in after.decode(result)]
    assert len(times_after) == len(times_before) == 3 * SHOT
    np.testing.assert_allclose(times_after, times_before, atol=1e-3)
    assert f"colorized {3 * SHOT} frame(s)" in output


@pytest.mark.parametrize("name", ["film.mkv", "pcm.mkv"])
def test_the_sound_is_copied_unchanged(films, tmp_path, name):
    code, output = colorize(films / name, "--out", tmp_path / "out.mp4")
    assert code == 0, output
    copied, original = audio_packets(tmp_path / "out.mp4"), audio_packets(films / name)
    assert [data for _, data in copied] == [data for _, data in original]  # remuxed, not re-encoded ...
    np.testing.assert_allclose([t for t, _ in copied], [t for t, _ in original], atol=1e-3)  # ... at its times
    samples = read_audio(films / name)
    assert samples.shape[1] >= 2 * 16000  # the whole two seconds ...
    np.testing.assert_array_equal(read_audio(tmp_path / "out.mp4"), samples)  # ... sample for sample


def test_subtitles_are_copied_where_the_container_allows(films, tmp_path):
    code, output = colorize(films / "film.mkv", "--out", tmp_path / "out.mkv")
    assert code == 0, output
    assert subtitle_packets(tmp_path / "out.mkv") == [SUBTITLE]
    code, output = colorize(films / "film.mkv", "--out", tmp_path / "out.mp4")
    assert code == 0 and "not copied: subtitle stream 2 (srt): .mp4 cannot hold it" in output
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]


def test_every_frame_keeps_the_inputs_lightness_and_gains_colour(films, tmp_path):
    """H.264 4:2:0 output: within the codec's tolerance; lossless output: within 8-bit rounding."""
    source = read_frames(films / "film.mkv")
    assert colorize(films / "film.mkv", "--out", tmp_path / "out.mp4")[0] == 0
    assert colorize(films / "film.mkv", "--out", tmp_path / "out.mkv", "--lossless")[0] == 0
    lossy, lossless = read_frames(tmp_path / "out.mp4"), read_frames(tmp_path / "out.mkv")
    assert len(lossy) == len(lossless) == len(source)
    for before, after, exact in zip(source, lossy, lossless):
        error = np.abs(lightness(after) - lightness(before))
        assert error.mean() < 1.0 and np.percentile(error, 99) < 4.0
        assert np.abs(lightness(exact) - lightness(before)).max() < 0.6
        assert np.hypot(*np.moveaxis(ab(exact), -1, 0)).mean() > 5  # colour, not a gray copy


def test_a_black_and_white_film_comes_out_in_colour_with_its_lightness(tmp_path):
    write_film(tmp_path / "gray.mkv", film_frames()[:6], FPS, audio=None, gray=True)
    source = read_frames(tmp_path / "gray.mkv")
    assert max(np.abs(ab(rgb)).max() for rgb in source) < 1  # gray indeed
    assert colorize(tmp_path / "gray.mkv", "--out", tmp_path / "out.mkv", "--lossless")[0] == 0
    for before, after in zip(source, read_frames(tmp_path / "out.mkv"), strict=True):
        assert np.abs(lightness(after) - lightness(before)).max() < 0.6
        assert np.hypot(*np.moveaxis(ab(after), -1, 0)).mean() > 5


def test_smooth_0_is_colorize_photo_on_the_extracted_frames(films, tmp_path):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i, rgb in enumerate(read_frames(films / "film.mkv")):
        Image.fromarray(rgb).save(frames_dir / f"{i:03d}.png")
    result = CliRunner().invoke(main, ["photo", str(frames_dir), "--out", str(tmp_path / "photos"), "--size", VIEW])
    assert result.exit_code == 0, result.output
    assert colorize(films / "film.mkv", "--out", tmp_path / "out.mkv", "--lossless", "--smooth", "0")[0] == 0
    video = read_frames(tmp_path / "out.mkv")
    photos = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "photos").glob("*.png"))]
    assert len(video) == len(photos) == 3 * SHOT
    for i, (from_video, from_photo) in enumerate(zip(video, photos)):
        # a folder runs each network op on one core per stream, a film on all cores: their float
        # sums may round apart, by one 8-bit level in rare pixels (1 of 57,600 values when written)
        difference = np.abs(from_video.astype(int) - from_photo.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, f"frame {i}"


def test_smoothing_at_least_halves_the_flicker_of_a_grainy_still(films, tmp_path):
    """Mean |Δab| between consecutive frames of a still shot with grain and exposure flicker."""

    def flicker(*options: str) -> float:
        out = tmp_path / f"out{len(options)}.mkv"
        assert colorize(films / "grain.mkv", "--out", out, "--lossless", *options)[0] == 0
        colours = [ab(rgb) for rgb in read_frames(out)]
        return float(np.mean([np.linalg.norm(b - a, axis=-1).mean() for a, b in itertools.pairwise(colours)]))

    per_frame, smoothed = flicker("--smooth", "0"), flicker()
    assert per_frame > 0.5  # there is flicker to remove
    assert smoothed <= 0.5 * per_frame


def test_a_cut_restarts_the_average(films, tmp_path):
    """The first frame after the cut is decoded as if alone; the frames before it are not."""
    assert colorize(films / "film.mkv", "--out", tmp_path / "alone.mkv", "--lossless", "--smooth", "0")[0] == 0
    code, output = colorize(films / "film.mkv", "--out", tmp_path / "smooth.mkv", "--lossless", "--smooth", "2")
    assert code == 0 and "scene cut(s)" in output and "0 scene cut(s)" not in output
    alone, smooth = read_frames(tmp_path / "alone.mkv"), read_frames(tmp_path / "smooth.mkv")
    np.testing.assert_array_equal(smooth[0], alone[0])
    np.testing.assert_array_equal(smooth[CUT], alone[CUT])
    assert not np.array_equal(smooth[CUT - 1], alone[CUT - 1])


def test_batches_of_frames_give_the_frames_of_one_at_a_time(films, tmp_path):
    """The average runs on across batch boundaries (5 does not divide the 24 frames)."""
    for size in ("1", "5"):
        out = tmp_path / f"b{size}.mkv"
        code, output = colorize(films / "film.mkv", "--out", out, "--lossless", "--batch-size", size)
        assert code == 0, output
    one, five = read_frames(tmp_path / "b1.mkv"), read_frames(tmp_path / "b5.mkv")
    assert len(one) == len(five) == 3 * SHOT
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(one, five)) <= 1  # batched arithmetic may round apart


def test_the_average_is_the_exponential_moving_average_by_hand():
    rng = np.random.default_rng(0)
    log_probs = torch.log_softmax(torch.from_numpy(rng.normal(size=(5, 7, 2, 3))).float(), dim=1)
    lightness = np.full((5, 8, 12), 40.0)
    lightness[3:] = 80.0  # a cut before frame 3
    times = [0.0, 0.1, 0.3, 0.4, 0.5]
    average = TemporalAverage(0.5)
    first, rest = average(log_probs[:2], lightness[:2], times[:2]), average(log_probs[2:], lightness[2:], times[2:])
    got = torch.cat([first, rest])  # two batches: the average runs on across them
    expected, state = [], None
    for k in range(5):
        if k in (0, 3):
            state = log_probs[k].double()
        else:
            w = np.exp(-(times[k] - times[k - 1]) / 0.5)
            state = w * state + (1 - w) * log_probs[k].double()
        expected.append(state)
    torch.testing.assert_close(got, torch.stack(expected).float())
    assert average.cuts == [3]
    assert TemporalAverage(0)(log_probs, lightness, times) is log_probs  # untouched: per-frame decoding


def test_block_histograms_match_numpy():
    lightness = np.random.default_rng(1).uniform(0, 100, (20, 30))
    lightness[0, 0], lightness[0, 1] = 0.0, 100.0
    got = lightness_histograms(lightness, blocks=2, bins=5)
    blocks = [lightness[:10, :15], lightness[:10, 15:], lightness[10:, :15], lightness[10:, 15:]]
    expected = np.array([np.histogram(b, bins=5, range=(0, 100))[0] / b.size for b in blocks])
    np.testing.assert_allclose(got, expected)
    assert histogram_distance(got, got) == 0
    assert histogram_distance(np.eye(5)[[0, 1]], np.eye(5)[[2, 3]]) == 1


def test_the_progress_line_off_a_terminal_shows_frames_per_second_and_time_left(monkeypatch, capsys):
    from colorize_core import progress

    clock = iter([0.0, 100.0, 100.0, 100.0])  # the start, then a tenth of the way 100 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.LineProgress(total=100, desc="film.mkv", unit="frame")
    bar.update(10)
    assert capsys.readouterr().err.strip() == "film.mkv: 10/100 frame (10%) in 100 s, 0.1 frame/s, about 900 s left"


def test_frames_stream_through_one_batch_at_a_time():
    """An endless film: only a batch is ever taken from it before its colours come out."""
    taken = []

    def endless():
        rgb = np.asarray(Image.fromarray(film_frames(64, 48)[0]))
        for i in itertools.count():
            taken.append(i)
            yield Image.fromarray(rgb), i / FPS

    colorizer = Colorizer.pretrained("cpu", size=48)
    batches = colorized_batches(colorizer, endless(), 0.38, TemporalAverage(0.5), batch_size=3)
    first = list(itertools.islice(batches, 2))
    assert [len(b) for b in first] == [3, 3] and first[0][0].shape == (48, 64, 3)
    assert len(taken) == 6


def test_a_truncated_film_gives_what_decodes_and_says_where_it_stopped(films, tmp_path):
    data = (films / "film.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 6 // 10])
    code, output = colorize(tmp_path / "cut.mkv", "--out", tmp_path / "out.mp4")
    assert code == 1
    written = len(read_frames(tmp_path / "out.mp4"))
    assert 0 < written < 3 * SHOT
    assert f"{tmp_path / 'cut.mkv'}: the input ends early: frames up to" in output
    assert f"colorized {written} frame(s)" in output


def test_a_damaged_film_gives_what_decodes_and_says_where_frames_are_missing(films, tmp_path):
    data = bytearray((films / "pcm.mkv").read_bytes())
    data[len(data) // 3 : len(data) // 3 + 3000] = bytes(3000)  # a stretch of zeros in the middle
    (tmp_path / "holes.mkv").write_bytes(bytes(data))
    code, output = colorize(tmp_path / "holes.mkv", "--out", tmp_path / "out.mp4")
    assert code == 1
    written = len(read_frames(tmp_path / "out.mp4"))
    assert 0 < written < 3 * SHOT and f"colorized {written} frame(s)" in output
    assert f"{tmp_path / 'holes.mkv'}: damaged: FFmpeg reported" in output
    assert f"{tmp_path / 'holes.mkv'}: no frames from " in output


def test_a_film_too_damaged_for_any_frame_is_one_line_and_no_output(films, tmp_path):
    data = (films / "film.mkv").read_bytes()
    (tmp_path / "head.mkv").write_bytes(data[:600])
    code, output = colorize(tmp_path / "head.mkv", "--out", tmp_path / "out.mp4")
    assert code == 1 and "Traceback" not in output and str(tmp_path / "head.mkv") in output
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_video_codec_this_ffmpeg_cannot_decode_is_one_line(films, tmp_path):
    data = (films / "pcm.mkv").read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1  # Matroska's codec id of H.264 ...
    (tmp_path / "unknown.mkv").write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ"))  # ... made unknown
    code, output = colorize(tmp_path / "unknown.mkv", "--out", tmp_path / "out.mp4")
    expected = f"Error: {tmp_path / 'unknown.mkv'}: its video codec cannot be decoded by this FFmpeg"
    assert code == 1 and output.strip() == expected
    assert not (tmp_path / "out.mp4").exists()


def non_films(folder: Path) -> dict[str, Path]:
    Image.fromarray(film_frames(64, 48)[0]).save(folder / "still.png")
    Image.fromarray(film_frames(64, 48)[0]).save(folder / "still.jpg")
    (folder / "notes.txt").write_text("not a film\n" * 20)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mkv").write_bytes(bytes(range(256)) * 8)
    with av.open(str(folder / "tone.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    (folder / "folder.mp4").mkdir()
    return {p.name: p for p in folder.iterdir()}


@pytest.mark.parametrize(
    "name, says",
    [
        ("still.png", "a still image"),
        ("still.jpg", "a still image"),
        ("notes.txt", "not a video"),  # FFmpeg's tty demuxer, or nothing, reads text
        ("empty.mp4", "not a video that FFmpeg can read"),
        ("garbage.mkv", "not a video that FFmpeg can read"),
        ("tone.m4a", "no video stream"),
        ("folder.mp4", "folder.mp4"),
        ("missing.mp4", "missing.mp4"),
    ],
)
def test_inputs_that_are_not_films_are_refused_in_one_line(tmp_path, name, says):
    non_films(tmp_path)
    code, output = colorize(tmp_path / name, "--out", tmp_path / "out.mp4")
    assert code in (1, 2) and says in output, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output
    assert not (tmp_path / "out.mp4").exists()


def test_the_output_is_never_the_input_and_never_replaced_unasked(films, tmp_path):
    source = tmp_path / "film.mp4"
    code, output = colorize(films / "film.mkv", "--out", source)
    assert code == 0, output
    before = source.read_bytes()
    code, output = colorize(source, "--out", source, "--overwrite")
    assert code == 1 and "would replace the input" in output
    assert colorize(source)[0] == 0  # default name beside it
    assert (tmp_path / "film_color.mp4").is_file()
    code, output = colorize(source)
    assert code == 1 and "film_color.mp4 exists; --overwrite replaces it" in output
    assert colorize(source, "--overwrite")[0] == 0
    assert source.read_bytes() == before
    code, output = colorize(source, "--out", tmp_path / "out.avi")
    assert code == 1 and "must end in .mp4, .m4v, .mov, .mkv" in output


@pytest.mark.parametrize(
    "option, value", [("--smooth", "-1"), ("--smooth", "nan"), ("-t", "-0.1"), ("--batch-size", "0")]
)
def test_numeric_options_are_bounded(films, tmp_path, option, value):
    code, output = colorize(films / "film.mkv", "--out", tmp_path / "out.mp4", option, value)
    assert code == 2 and "must be" in output


@pytest.mark.parametrize(
    "name, codec, pix_fmt",
    [("mpeg4.avi", "mpeg4", "yuv420p"), ("mjpeg.avi", "mjpeg", "yuvj420p"), ("mpeg2.ts", "mpeg2video", "yuv420p"),
     ("vp9.webm", "libvpx-vp9", "yuv420p"), ("animation.gif", "gif", "rgb8")],
)
def test_other_containers_and_codecs_are_read(tmp_path, name, codec, pix_fmt):
    write_film(tmp_path / name, film_frames(64, 48)[:6], FPS, audio=None, codec=codec, pix_fmt=pix_fmt)
    code, output = colorize(tmp_path / name, "--out", tmp_path / "out.mp4")
    assert code == 0, output
    frames = read_frames(tmp_path / "out.mp4")
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)


def test_odd_sizes_are_kept(tmp_path):
    write_film(tmp_path / "odd.mkv", [rgb[:47, :63] for rgb in film_frames(64, 48)[:4]], FPS, audio=None)
    assert colorize(tmp_path / "odd.mkv", "--out", tmp_path / "out.mp4")[0] == 0
    assert read_frames(tmp_path / "out.mp4")[0].shape == (47, 63, 3)


def test_without_pyav_the_command_says_how_to_get_it(films, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails
    monkeypatch.delitem(sys.modules, "colorize_core.inference.video", raising=False)
    code, output = colorize(films / "film.mkv", "--out", tmp_path / "out.mp4")
    assert code == 1 and "pip install 'colorize[video]'" in output


@pytest.mark.slow  # new processes
@pytest.mark.parametrize("kill, left", [(signal.SIGKILL, 1), (signal.SIGINT, 0)], ids=["SIGKILL", "SIGINT"])
def test_an_interrupted_run_leaves_no_partial_output(films, tmp_path, kill, left):
    """Killed outright, the run leaves its temporary file (the next run removes it); interrupted,
    it removes it itself. Neither leaves the output."""
    out = tmp_path / "out.mp4"
    argv = ["video", str(films / "film.mkv"), "--out", str(out), "--size", VIEW]
    process = run_until("colorize_core.inference.video:encode_frames", 5, argv, tmp_path / "event")
    process.send_signal(kill)  # after five frames were encoded and written
    assert process.wait(timeout=60) != 0
    assert not out.exists()
    assert len(list(tmp_path.glob(".out.mp4.*.tmp"))) == left
    command = [sys.executable, "-m", "colorize_core.cli", *argv]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(read_frames(out)) == 3 * SHOT
    assert not list(tmp_path.glob(".*.tmp"))  # the next run cleaned up
