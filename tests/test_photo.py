"""`colorize photo`: folders of awkward files, pipes, interruptions, metadata, and the pixel limit."""

import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import colourful_rgb, exif_rotated_jpeg, png_with_claimed_size, run_until, tiny_checkpoint
from PIL import Image, ImageCms
from skimage.color import rgb2lab

from colorize_core.cli import main
from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.photo import PhotoOptions, colorize_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def lightness(path_or_image) -> np.ndarray:
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    if image.mode == "I;16":
        gray = np.asarray(image, np.float64) / 65535
        return rgb2lab(np.repeat(gray[..., None], 3, -1))[..., 0]
    return rgb2lab(np.asarray(image.convert("RGB")) / 255.0)[..., 0]


def make_folder(folder: Path) -> dict[str, str]:
    """Inputs of every kind; name -> expected output name (or 'skip')."""
    folder.mkdir(parents=True)
    rgb = colourful_rgb(60, 90)
    Image.fromarray(rgb).save(folder / "good.jpg", quality=95)
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    gray16 = (np.linspace(0, 1, 60 * 90).reshape(60, 90) * 65535).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(rgb).convert("1").save(folder / "bilevel.png")
    exif_rotated_jpeg(folder / "rotated.jpg")
    good = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.png").write_text("not an image\n")
    (folder / "readme.txt").write_text("ignored: not an image extension\n")
    return {
        "good.jpg": "good_color.jpg",
        "gray.png": "gray_color.png",
        "gray16.png": "gray16_color.png",
        "palette.png": "palette_color.png",
        "bilevel.png": "bilevel_color.png",
        "rotated.jpg": "rotated_color.jpg",
        "truncated.jpg": "skip",
        "notes.png": "skip",
    }


def test_folder_of_every_kind(tmp_path, checkpoint):
    expected = make_folder(tmp_path / "in")
    result = CliRunner().invoke(
        main, ["photo", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1  # something was skipped
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(v for v in expected.values() if v != "skip")
    skipped = [line for line in result.output.splitlines() if line.startswith("  skipped")]
    assert len(skipped) == 2 and any("truncated.jpg: cannot decode" in s for s in skipped)
    assert any("notes.png: not a readable image" in s for s in skipped)
    assert "colorized 6 image(s)" in result.output
    for source, output in expected.items():
        if output == "skip":
            continue
        original = Image.open(tmp_path / "in" / source)
        if source == "rotated.jpg":
            assert Image.open(tmp_path / "out" / output).size == (20, 40)  # upright
            continue
        assert Image.open(tmp_path / "out" / output).size == original.size
        error = np.abs(lightness(tmp_path / "out" / output) - lightness(original))
        assert error.max() < (1.0 if source.endswith(".jpg") else 0.6), source  # JPEG output is lossy


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, checkpoint):
    Image.fromarray(colourful_rgb()).save(tmp_path / "a.png")
    args = ["photo", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint)]
    assert CliRunner().invoke(main, args).exit_code == 0
    (tmp_path / "a_color.png").write_bytes(b"keep me")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "1 already done" in result.output
    assert (tmp_path / "a_color.png").read_bytes() == b"keep me"
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0
    assert Image.open(tmp_path / "a_color.png").size == (64, 48)


def test_several_temperatures_and_the_sheet(tmp_path, checkpoint):
    Image.fromarray(colourful_rgb(40, 50)).save(tmp_path / "a.png")
    result = CliRunner().invoke(
        main, ["photo", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), "--T", "0,0.09,0.38", "--sheet"]
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} == {
        "a.png",
        "a_color_T0.png",
        "a_color_T0.09.png",
        "a_color_T0.38.png",
        "a_color_sheet.png",
    }
    assert Image.open(tmp_path / "a_color_sheet.png").size[0] == 4 * 50  # input + 3 temperatures


def test_metadata_is_copied(tmp_path, checkpoint):
    exif = Image.Exif()
    exif[0x013B] = "A. Photographer"  # Artist
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(colourful_rgb()).save(tmp_path / "a.jpg", exif=exif, icc_profile=icc, quality=95)
    assert CliRunner().invoke(main, ["photo", str(tmp_path / "a.jpg"), "--checkpoint", str(checkpoint)]).exit_code == 0
    out = Image.open(tmp_path / "a_color.jpg")
    assert out.getexif()[0x013B] == "A. Photographer"
    assert out.info["icc_profile"] == icc


@pytest.mark.slow
def test_stdin_to_stdout_round_trips_through_a_pipe(tmp_path, checkpoint):
    rgb = colourful_rgb(50, 70)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    command = f"cat {tmp_path / 'in.png'} | colorize photo - --checkpoint {checkpoint} | cat > {tmp_path / 'out.png'}"
    subprocess.run(command, shell=True, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    out = Image.open(tmp_path / "out.png")
    assert out.format == "PNG" and out.size == (70, 50)
    assert np.abs(lightness(out) - lightness(Image.fromarray(rgb))).max() < 0.6


@pytest.mark.slow
def test_no_partial_file_after_an_interrupted_run(tmp_path, checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(colourful_rgb(300, 400, seed=i)).save(folder / f"p{i:02d}.png")
    argv = ["photo", str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    process = run_until("colorize_core.inference.photo:atomic_write_bytes", 2, argv, tmp_path / "event", env=env)
    process.send_signal(signal.SIGKILL)  # while later photos are being read, colorized and written
    process.wait()
    done = sorted((tmp_path / "out").glob("*.png"))
    assert 2 <= len(done) < 6  # another writer thread may have finished one more meanwhile
    for path in done:
        Image.open(path).load()  # complete files only; a partial PNG fails here
    command = [sys.executable, "-m", "colorize_core.cli", *argv]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{len(done)} already done" in result.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 6
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind


def test_a_run_that_ends_while_the_kernel_loads_exits_without_a_traceback(tmp_path):
    """Two missing files end the run at once, while the compiled composition still loads in the
    background (it must not need the band pool, which takes no work once the interpreter exits)."""
    argv = ["photo", str(tmp_path / "missing1.jpg"), str(tmp_path / "missing2.jpg"), "--out", str(tmp_path)]
    command = [sys.executable, "-m", "colorize_core.cli", *argv]
    result = subprocess.run(command, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True)
    assert result.returncode == 1  # files were skipped
    assert "no such file" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_pixel_limit_refuses_a_crafted_header_without_allocating(tmp_path, checkpoint):
    (tmp_path / "bomb.png").write_bytes(png_with_claimed_size(80_000, 60_000))
    colorizer = Colorizer.from_checkpoint(checkpoint)
    tracemalloc.start()
    summary = colorize_files([tmp_path / "bomb.png"], colorizer, PhotoOptions([0.09], max_pixels=50_000_000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert summary.skipped == [
        (str(tmp_path / "bomb.png"), "header claims 80000x60000 = 4,800,000,000 pixels, more than the limit of "
         "50,000,000 (max_pixels); refused before decoding")
    ]  # fmt: skip
    assert peak < 5_000_000  # decoding would need 14 GB
    assert not (tmp_path / "bomb_color.png").exists()


BUNDLED = ROOT / "colorize_core" / "resources" / "colorizer.pt"


def test_bundled_model_loads_safely_and_colorizes_a_photo(tmp_path):
    """The model that ships in the package: a file of tensors and plain data (weights_only),
    small enough for git, used by `colorize photo` with no --checkpoint."""
    import torch

    assert BUNDLED.stat().st_size <= 12 * 2**20
    data = torch.load(BUNDLED, map_location="cpu", weights_only=True)
    assert data["model"]["arch"] == "efficientnet_lite2_unet"
    colorizer = Colorizer.pretrained(device="cpu")
    assert colorizer.size == (data["view_size"] or data["train_size"])

    from skimage import data as skdata

    gray = Image.fromarray(skdata.chelsea()).convert("L").resize((301, 229))
    gray.save(tmp_path / "cat.png")
    result = CliRunner().invoke(main, ["photo", str(tmp_path / "cat.png")])
    assert result.exit_code == 0, result.output
    colour = Image.open(tmp_path / "cat_color.png")
    assert colour.size == (301, 229) and colour.mode == "RGB"
    np.testing.assert_allclose(lightness(colour), lightness(gray), atol=1.0)  # the input's own L
    ab = rgb2lab(np.asarray(colour) / 255.0)[..., 1:]
    assert np.hypot(ab[..., 0], ab[..., 1]).mean() > 5  # colour, not a gray copy


def test_aspect_ratio_is_kept_and_inputs_padded_to_the_stride(tmp_path):
    """The network sees a 600×200 photo at 3:1 (padded to its stride), not warped to a square."""
    from colorize_core.inference.colorizer import network_lightness

    picture = Image.fromarray(colourful_rgb(200, 600))
    padded, (h, w) = network_lightness(picture, 64, multiple=32)
    assert (h, w) == (64, 192) and padded.shape == (64, 192)
    padded, (h, w) = network_lightness(picture, 72, multiple=32)
    assert (h, w) == (72, 216) and padded.shape == (96, 224)
    np.testing.assert_array_equal(padded[72:], np.repeat(padded[71:72], 24, axis=0))  # edge padding


def test_a_long_strip_gets_a_bounded_view_and_is_colorized_at_full_size(tmp_path):
    """A 60,000×2 strip (120,000 pixels, under any pixel cap) would be a 224 × 6.7-million-pixel
    view at the bundled model's short side; the view is capped at MAX_VIEW_ASPECT : 1 instead,
    and the whole strip comes back at its own size. Photos within the cap keep their short side.
    One wider than a JPEG can hold is skipped, named, when JPEG is asked for."""
    from colorize_core.constants import MAX_VIEW_ASPECT
    from colorize_core.inference.colorizer import network_shape

    assert network_shape(1024, 768, 224) == (224, 300) and network_shape(3584, 224, 224) == (224, 3584)
    assert network_shape(60_000, 2, 224) == (4, MAX_VIEW_ASPECT * 224)
    strip = np.repeat(colourful_rgb(2, 600), 100, axis=1)  # (2, 60000, 3)
    Image.fromarray(strip).save(tmp_path / "strip.png")
    result = CliRunner().invoke(main, ["photo", str(tmp_path / "strip.png"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "strip_color.png").size == (60_000, 2)
    Image.fromarray(np.repeat(colourful_rgb(2, 660), 100, axis=1)).save(tmp_path / "wide.png")  # 66,000 wide
    result = CliRunner().invoke(
        main,
        [
            "photo",
            str(tmp_path / "wide.png"),
            str(tmp_path / "strip.png"),
            "--format",
            "jpg",
            "--out",
            str(tmp_path / "jpg"),
        ],
    )
    assert (
        "skipped" in result.output
        and "wide.png: 66000x2, more than a JPEG holds (65,500 pixels a side)" in result.output
    )
    assert [p.name for p in (tmp_path / "jpg").iterdir()] == ["strip_color.jpg"]  # the rest of the run goes on


def test_command_line_version_order_and_temperature_spellings(tmp_path, checkpoint):
    from importlib.metadata import version

    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"colorize {version('colorize')}"
    listed = runner.invoke(main, ["--help"]).output.split("Commands:")[1].split()
    assert listed[0] == "photo" and listed.index("sample") < listed.index("train") < listed.index("evaluate")
    Image.fromarray(colourful_rgb()).save(tmp_path / "a.png")
    for spelling in ("-t", "--temperature", "--T"):
        result = runner.invoke(
            main, ["photo", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), spelling, "0.2,1", "--overwrite"]
        )
        assert result.exit_code == 0, (spelling, result.output)
        assert {p.name for p in tmp_path.glob("a_color*.png")} == {"a_color_T0.2.png", "a_color_T1.png"}
        for path in tmp_path.glob("a_color*.png"):
            path.unlink()


def test_without_a_temperature_the_checkpoints_own_is_used(tmp_path, checkpoint):
    """`colorize export -t` stores a T; `colorize photo` without -t decodes at it (output equal to
    an explicit -t of the same T, different from the 0.38 fallback of a checkpoint with none)."""
    from colorize_core.constants import DEFAULT_TEMPERATURE

    runner = CliRunner()
    own = tmp_path / "own.pt"
    assert runner.invoke(main, ["export", str(checkpoint), str(own), "-t", "0.09"]).exit_code == 0
    assert Colorizer.from_checkpoint(own, "cpu").default_T == 0.09
    assert Colorizer.from_checkpoint(checkpoint, "cpu").default_T == DEFAULT_TEMPERATURE
    photo = tmp_path / "in.png"
    Image.fromarray(colourful_rgb(48, 64)).save(photo)

    def colorized(model: Path, *options: str) -> np.ndarray:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        result = runner.invoke(main, ["photo", str(photo), "--checkpoint", str(model), "--out", str(out), *options])
        assert result.exit_code == 0, result.output
        return np.asarray(Image.open(next(out.iterdir())))

    implicit = colorized(own)
    assert np.array_equal(implicit, colorized(own, "-t", "0.09"))
    assert not np.array_equal(implicit, colorized(own, "-t", f"{DEFAULT_TEMPERATURE:g}"))
