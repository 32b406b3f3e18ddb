"""The shard stage: contents against scikit-image, determinism, resume, and every bad input."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import xxhash
from helpers import colour_photos, colourful_rgb, exif_rotated_jpeg, png_with_claimed_size, write_lists
from PIL import Image
from skimage.color import rgb2lab

from colorize_core.config import ShardParams
from colorize_core.data import shard as shard_module
from colorize_core.data.shard import run_shard
from colorize_core.data.shard_format import (
    CELL_KEY,
    LIGHTNESS_KEY,
    ShardError,
    npy_buffer,
    npy_bytes,
    read_index,
    read_samples,
    shard_urls,
    tar_header,
)
from colorize_core.images import ImageError, load_rgb8


def read_split(shards: Path, split: str = "train") -> list[dict]:
    return list(read_samples(shard_urls(shards, split)))


def tar_bytes(shards: Path) -> dict[str, bytes]:
    return {p.relative_to(shards).as_posix(): p.read_bytes() for p in sorted(shards.rglob("*.tar"))}


PARAMS = ShardParams(size=32, samples_per_shard=4, workers=1)


def test_samples_hold_l_and_cells_of_the_resized_image(tmp_path):
    photos = colour_photos(tmp_path / "img", 3)
    run_shard(PARAMS, write_lists(tmp_path, photos), tmp_path / "shards", tmp_path / "reports")
    samples = read_split(tmp_path / "shards")
    assert [s["__key__"] for s in samples] == ["000000", "000001", "000002"]
    for path, sample in zip(photos, samples):
        rgb = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
        lab = rgb2lab(rgb / 255.0)
        assert sample[LIGHTNESS_KEY].dtype == np.float16 and sample[LIGHTNESS_KEY].shape == (32, 32)
        assert np.abs(sample[LIGHTNESS_KEY] - lab[..., 0]).max() < 0.05
        cells = np.floor((lab[..., 1] + 128) / 16) * 16 + np.floor((lab[..., 2] + 128) / 16)
        assert sample[CELL_KEY].dtype == np.uint8
        assert (sample[CELL_KEY] == cells).mean() > 0.999
        assert json.loads(sample["json"])["path"] == str(path) and sample["cls"] == b"0"


def test_shards_are_byte_identical_across_runs_and_worker_counts(tmp_path):
    lists = write_lists(tmp_path, colour_photos(tmp_path / "img", 10))
    run_shard(PARAMS, lists, tmp_path / "one", tmp_path / "r1")
    run_shard(ShardParams(size=32, samples_per_shard=4, workers=2), lists, tmp_path / "two", tmp_path / "r2")
    first, second = tar_bytes(tmp_path / "one"), tar_bytes(tmp_path / "two")
    assert len(first) == 3 and first == second


def all_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("grid", [16, 10])
def test_compiled_and_numpy_encoders_write_the_same_bytes(tmp_path, grid):
    """Every file (tars, sidecars, index, reports) alike, with 1 and 2 workers; each sidecar holds
    its tar's XXH3-128, computed while writing (checked against the library's one-shot digest)."""
    lists = write_lists(tmp_path, colour_photos(tmp_path / "img", 9))
    runs = {}
    for compiled in (False, True):
        for workers in (1, 2):
            out = tmp_path / f"{compiled}-{workers}"
            params = ShardParams(size=48, grid=grid, samples_per_shard=4, workers=workers)
            run_shard(params, lists, out / "shards", out / "reports", compiled=compiled)
            runs[compiled, workers] = all_bytes(out)
    assert len(runs[False, 1]) == 3 * 2 + 1 + 2  # 3 shards and their sidecars, the index, 2 reports
    assert all(files == runs[False, 1] for files in runs.values())
    for sidecar in (tmp_path / "True-2" / "shards" / "train").glob("*.json"):
        written = sidecar.with_suffix(".tar").read_bytes()
        assert json.loads(sidecar.read_text())["tar_xxh128"] == xxhash.xxh3_128_hexdigest(written)


def test_the_compiled_encoder_is_loaded_only_for_large_runs(tmp_path):
    """A small run (the demo's size) never imports Numba: loading it would cost more than it saves;
    and no run imports torch (1.4 s, and a 10x larger process to fork for the workers)."""
    lists = write_lists(tmp_path, colour_photos(tmp_path / "img", 3))
    code = (
        "import sys; from pathlib import Path; from colorize_core.config import ShardParams;"
        "from colorize_core.data.shard import run_shard;"
        f"run_shard(ShardParams(size=32, samples_per_shard=4, workers=1), Path({str(lists)!r}),"
        f" Path({str(tmp_path / 'shards')!r}), Path({str(tmp_path / 'reports')!r}));"
        "print('numba' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"
    assert shard_module.COMPILED_MIN_PIXELS > 400 * 64 * 64  # the demo: 400 images of 64 x 64


def test_tar_headers_are_tarfiles_own():
    """The headers built from a template per size equal tarfile's, for any name and size."""
    rng = np.random.default_rng(0)
    fields = ["lightness.npy", "ab_cell.npy", "cls", "json", "x" * 93]
    for _ in range(2000):
        name = f"{rng.integers(10**6):06d}.{rng.choice(fields)}"
        size = int(rng.choice([0, 1, 511, 512, 131_200, rng.integers(8**11)]))
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, 0, 0o444
        assert tar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT)
    long_name = "a" * 60 + "/" + "b" * 60  # over 100 bytes: ustar's prefix field
    assert tarfile.TarInfo.frombuf(tar_header(long_name, 5), "utf-8", "strict").name == long_name


def test_npy_buffer_holds_the_bytes_of_npy_bytes():
    data, array = npy_buffer((3, 5), np.float16)
    array[:] = np.arange(15).reshape(3, 5)
    assert bytes(data) == npy_bytes(np.arange(15, dtype=np.float16).reshape(3, 5))


def test_interrupted_run_resumes_and_ends_identical(tmp_path, monkeypatch):
    lists = write_lists(tmp_path, colour_photos(tmp_path / "img", 10))
    run_shard(PARAMS, lists, tmp_path / "reference", tmp_path / "r0")

    real_write_tar = shard_module.write_tar
    written = []

    def write_then_die(path, samples):
        if len(written) == 2:
            raise KeyboardInterrupt  # as if killed while writing the third shard
        written.append(path)
        return real_write_tar(path, samples)

    monkeypatch.setattr(shard_module, "write_tar", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "r1")
    split_dir = tmp_path / "shards" / "train"
    assert sorted(p.name for p in split_dir.iterdir()) == [
        "shard-000000.json",
        "shard-000000.tar",
        "shard-000001.json",
        "shard-000001.tar",
    ]  # complete shards only, no temporary file left
    mtimes = {p.name: p.stat().st_mtime_ns for p in split_dir.iterdir()}

    monkeypatch.setattr(shard_module, "write_tar", real_write_tar)
    run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "r1")
    assert all(p.stat().st_mtime_ns == mtimes[p.name] for p in split_dir.iterdir() if p.name in mtimes)
    assert tar_bytes(tmp_path / "shards") == tar_bytes(tmp_path / "reference")


def test_changed_parameters_rebuild_and_shrinking_lists_drop_old_shards(tmp_path):
    photos = colour_photos(tmp_path / "img", 10)
    run_shard(PARAMS, write_lists(tmp_path, photos), tmp_path / "shards", tmp_path / "r")
    run_shard(ShardParams(size=16, samples_per_shard=4, workers=1), write_lists(tmp_path, photos[:5]), tmp_path / "shards", tmp_path / "r")
    samples = read_split(tmp_path / "shards")
    assert len(samples) == 5 and samples[0][LIGHTNESS_KEY].shape == (16, 16)
    assert sorted(p.name for p in (tmp_path / "shards" / "train").glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
def test_every_bad_input_is_skipped_or_excluded_with_a_reason(tmp_path, image_zoo, compiled):
    folder, expected = image_zoo
    paths = [folder / name for name in sorted(expected)]
    counts = run_shard(
        ShardParams(size=32, samples_per_shard=100, workers=2),
        write_lists(tmp_path, paths),
        tmp_path / "shards",
        tmp_path / "reports",
        compiled=compiled,
    )
    written = {Path(json.loads(s["json"])["path"]).name for s in read_split(tmp_path / "shards")}
    assert written == {name for name, outcome in expected.items() if outcome == "written"}
    problems = (tmp_path / "reports" / "shard_skipped.csv").read_text().splitlines()[1:]
    got = {Path(line.split(",")[2]).name: line.split(",")[1] for line in problems}
    assert got == {name: outcome for name, outcome in expected.items() if outcome != "written"}
    for outcome in ("skipped_unreadable", "excluded_grayscale", "excluded_no_chroma"):
        assert counts["train"][outcome] == sum(v == outcome for v in expected.values())
    assert json.loads((tmp_path / "reports" / "shard.json").read_text()) == counts
    reasons = {Path(line.split(",")[2]).name: line for line in problems}
    assert "refused before decoding" in reasons["bomb.png"]
    assert "empty file" in reasons["empty.jpg"]
    assert read_index(tmp_path / "shards")["splits"]["train"]["samples"] == len(written)


def test_unusual_images_are_converted_correctly(tmp_path):
    rgb = colourful_rgb()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    converted, mode = load_rgb8(tmp_path / "cmyk.tif")
    assert mode == "CMYK" and np.abs(converted.astype(int) - rgb).max() <= 2

    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    palette.save(tmp_path / "palette.png")
    assert np.array_equal(load_rgb8(tmp_path / "palette.png")[0], np.asarray(palette.convert("RGB")))

    gray16 = np.full((8, 8), 200 * 257, np.uint16)  # 16-bit 51400 is 8-bit 200
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    converted, mode = load_rgb8(tmp_path / "gray16.png")
    assert mode == "I;16" and np.all(converted == 200)

    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "transparent.png")
    assert np.all(load_rgb8(tmp_path / "transparent.png")[0] == 255)  # composited onto white

    exif_rotated_jpeg(tmp_path / "rotated.jpg")
    upright, _ = load_rgb8(tmp_path / "rotated.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[5, 10, 0] > 150 and upright[5, 10, 2] < 100  # red on top
    assert upright[35, 10, 2] > 150 and upright[35, 10, 0] < 100  # blue below


def test_pixel_limit_refuses_from_the_header_without_allocating(tmp_path):
    import tracemalloc

    (tmp_path / "bomb.png").write_bytes(png_with_claimed_size(60_000, 50_000))
    tracemalloc.start()
    with pytest.raises(ImageError, match=r"60000x50000 = 3,000,000,000 pixels"):
        load_rgb8(tmp_path / "bomb.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000  # a decode would need 9 GB
    with pytest.raises(ImageError, match="max_pixels"):
        load_rgb8(tmp_path / "bomb.png", max_pixels=10)


def test_shards_do_not_depend_on_modification_times(tmp_path):
    """Every clone computes the same shards: the fingerprint reads contents, not mtimes."""
    photos = colour_photos(tmp_path / "img", 6)
    lists = write_lists(tmp_path, photos[:4], val=photos[4:])
    run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "reports")
    before = tar_bytes(tmp_path / "shards"), {p.name: p.read_bytes() for p in (tmp_path / "shards").rglob("*.json")}
    for photo in photos:
        os.utime(photo, (1_000_000_000, 1_000_000_000))  # a fresh clone's files have other times
    shutil.rmtree(tmp_path / "shards")
    run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "reports")
    after = tar_bytes(tmp_path / "shards"), {p.name: p.read_bytes() for p in (tmp_path / "shards").rglob("*.json")}
    assert after == before


def test_a_damaged_shard_is_rebuilt_and_a_reader_names_it(tmp_path):
    photos = colour_photos(tmp_path / "img", 6)
    lists = write_lists(tmp_path, photos[:4], val=photos[4:])
    run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "reports")
    good = tar_bytes(tmp_path / "shards")
    damaged = tmp_path / "shards" / "train" / "shard-000000.tar"
    damaged.write_bytes(damaged.read_bytes()[:5000])  # truncated, as a full disk or a killed copy leaves it
    with pytest.raises(ShardError, match=f"{damaged}: damaged shard .*`dvc repro` rebuilds it"):
        list(read_samples(shard_urls(tmp_path / "shards", "train")))
    run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "reports")  # the resume checks every shard
    assert tar_bytes(tmp_path / "shards") == good


def test_logs_off_a_terminal_are_a_few_whole_lines(tmp_path, image_zoo, monkeypatch, capsys):
    """`dvc repro > log.txt`: no bar redraws and no line per excluded file; a progress line at a
    tenth of the way at most once a minute, none for a loop shorter than a minute."""
    from colorize_core import progress as progress_module

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    folder, _ = image_zoo
    photos = colour_photos(tmp_path / "img", 30)
    lists = write_lists(tmp_path, photos + sorted(folder.iterdir()))
    run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "reports")
    err = capsys.readouterr().err
    assert "\r" not in err and "excluded_grayscale:" not in err
    assert len(err.splitlines()) <= 5, err  # this run took seconds: no progress lines
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    # 2000 s: every tenth; 500 s: the first tenth crossed a minute after the last line (items 12, 24, .., 96)
    for seconds_per_item, lines in ((20.0, 10), (5.0, 8), (0.01, 0)):
        for _ in progress_module.progress(range(100), desc="loop"):
            clock[0] += seconds_per_item
        assert len(capsys.readouterr().err.splitlines()) == lines


def test_sidecars_are_synced_to_disk_and_tars_are_not(tmp_path, monkeypatch):
    """The sidecar is the durable record (fsync, then rename), written after its tar, whose
    checksum it holds; the tar skips the fsync: a torn one is rebuilt as above."""
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    lists = write_lists(tmp_path, colour_photos(tmp_path / "img", 5))
    run_shard(PARAMS, lists, tmp_path / "shards", tmp_path / "reports")
    shard_files = [name for name in synced if name.startswith(".shard-")]  # their temporaries
    assert sorted(name.split(".")[1] for name in shard_files) == ["shard-000000", "shard-000001"]
    assert all(".json." in name for name in shard_files)
