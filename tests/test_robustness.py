"""`colorize photo` and checkpoints against broken files and hostile options: one line, no
traceback, no input touched, bounded reads (issue 13, and cases found in a later pass)."""

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import colourful_rgb, tiny_checkpoint
from PIL import Image

from colorize_core.checkpoint import CheckpointError, load_checkpoint
from colorize_core.cli import main
from colorize_core.config import BATCH_SIZE, MAX_PIXELS, NETWORK_SIZE, ConfigError, load_params
from colorize_core.images import ImageError
from colorize_core.inference import photo as photo_module
from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.photo import PhotoOptions, colorize_stream
from colorize_core.io import atomic_write_bytes, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line(result, exit_code: int, *words: str) -> str:
    """The command failed with ``exit_code`` and one line (after click's usage text) naming ``words``."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    line = [row for row in result.output.strip().splitlines() if row.startswith("Error")][-1]
    for word in words:
        assert word in line, (word, line)
    return line


def photo_file(folder: Path, name: str = "a.png", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(colourful_rgb(40, 56, seed=seed)).save(folder / name)
    return folder / name


# --- checkpoints ------------------------------------------------------------------------------


def edited_checkpoint(source: Path, target: Path, edit) -> Path:
    data = torch.load(source, weights_only=True)
    edit(data)
    torch.save(data, target)
    return target


def test_weights_of_the_wrong_shape_are_one_line(tmp_path, checkpoint):
    def shrink(data):
        key = next(k for k, v in data["state_dict"].items() if v.dim() == 4)
        data["state_dict"][key] = data["state_dict"][key][:-1]  # one output channel fewer

    bad = edited_checkpoint(checkpoint, tmp_path / "bad.pt", shrink)
    result = run("photo", photo_file(tmp_path), "--checkpoint", bad)
    assert_one_line(result, 1, "bad.pt", "do not fit eccv16 width 0.125", "the network needs")


def test_weights_of_another_width_are_one_line(tmp_path, checkpoint):
    bad = edited_checkpoint(checkpoint, tmp_path / "wide.pt", lambda data: data["model"].update(width=0.25))
    assert_one_line(run("photo", photo_file(tmp_path), "--checkpoint", bad), 1, "wide.pt", "width 0.25")


@pytest.mark.parametrize("value", [0, -64, 100_000])
def test_a_bad_train_size_names_the_file(tmp_path, checkpoint, value):
    bad = edited_checkpoint(checkpoint, tmp_path / "size.pt", lambda data: data.update(train_size=value))
    with pytest.raises(CheckpointError, match=f"size.pt: train_size must be a short side in pixels .*, got {value}"):
        load_checkpoint(bad)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_an_unsafe_checkpoint_is_refused_with_advice_that_is_safe(tmp_path):
    torch.save({"format": "colorize-checkpoint/1", "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "evil.pt")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'evil.pt'}: refused") and "\n" not in message
    assert "weights_only=False" not in message and "never load this file unsafely" in message


def test_debug_shows_the_traceback(tmp_path, checkpoint):
    bad = edited_checkpoint(checkpoint, tmp_path / "bad.pt", lambda data: data.update(train_size=0))
    result = run("--debug", "photo", photo_file(tmp_path), "--checkpoint", bad)
    assert isinstance(result.exception, CheckpointError)


# --- outputs: never an input, never a runaway ----------------------------------------------


def test_an_output_folder_that_cannot_exist_is_one_line(tmp_path, checkpoint):
    (tmp_path / "file").write_text("not a folder")
    result = run("photo", photo_file(tmp_path / "in"), "--checkpoint", checkpoint, "--out", tmp_path / "file" / "x")
    assert_one_line(result, 1, str(tmp_path / "file"), "Not a directory")


def test_a_failed_write_skips_that_photo_and_the_run_goes_on(tmp_path, checkpoint, monkeypatch):
    folder = tmp_path / "in"
    for i in range(3):
        photo_file(folder, f"p{i}.png", seed=i)
    real = photo_module.atomic_write_bytes

    def disk_full_for_p1(path, data):
        if path.name.startswith("p1"):
            raise OSError(28, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(photo_module, "atomic_write_bytes", disk_full_for_p1)
    result = run("photo", folder, "--checkpoint", checkpoint)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No space left on device" in result.output and "colorized 2 image(s)" in result.output
    assert sorted(p.name for p in folder.glob("*_color.png")) == ["p0_color.png", "p2_color.png"]


def test_an_empty_suffix_never_replaces_the_input(tmp_path, checkpoint):
    source = photo_file(tmp_path)
    before = source.read_bytes()
    result = run("photo", source, "--checkpoint", checkpoint, "--suffix", "", "--overwrite")
    assert result.exit_code == 1 and "would replace an input" in result.output
    assert source.read_bytes() == before


@pytest.mark.parametrize("suffix", ["/x", "_c/../../y", ".."])
def test_a_suffix_may_not_leave_the_folder(tmp_path, checkpoint, suffix):
    result = run("photo", photo_file(tmp_path), "--checkpoint", checkpoint, "--suffix", suffix)
    assert_one_line(result, 2, "--suffix", "path separator")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png"]


@pytest.mark.parametrize("layout", ["beside", "out inside the input folder"])
def test_a_second_run_leaves_the_first_runs_outputs_alone(tmp_path, checkpoint, layout):
    folder = tmp_path / "in"
    photo_file(folder, "a.png")
    photo_file(folder, "b.jpg".replace(".jpg", ".png"), seed=1)
    extra = ["--out", folder / "coloured", "-r"] if layout != "beside" else []
    for _ in range(3):
        result = run("photo", folder, "--checkpoint", checkpoint, *extra)
        assert result.exit_code == 0, result.output
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    outputs = [n for n in names if n not in ("a.png", "b.png")]
    assert len(outputs) == 2 and not any("_color_color" in n for n in names), names


def test_outputs_are_marked_so_even_a_renamed_one_is_recognised(tmp_path, checkpoint):
    source = photo_file(tmp_path / "in")
    assert run("photo", source, "--checkpoint", checkpoint).exit_code == 0
    (tmp_path / "in" / "a_color.png").rename(tmp_path / "in" / "renamed.png")
    result = run("photo", tmp_path / "in" / "renamed.png", "--checkpoint", checkpoint)
    assert result.exit_code == 0 and "1 earlier output(s) of colorize left alone" in result.output
    assert not (tmp_path / "in" / "renamed_color.png").exists()


def test_two_inputs_never_write_the_same_output(tmp_path, checkpoint):
    folder = tmp_path / "in"
    photo_file(folder, "a.png")
    Image.fromarray(colourful_rgb(40, 56, seed=3)).save(folder / "a.jpg")
    result = run("photo", folder, "--checkpoint", checkpoint, "--format", "png")
    assert result.exit_code == 1 and "is also the output of" in result.output
    assert len(list(folder.glob("a_color*"))) == 1


@pytest.mark.parametrize(
    "option, value",
    [("-t", "nan"), ("-t", "1e309"), ("-t", "-0.5"), ("-t", "0.2,inf"), ("--size", "100000"), ("--size", "8"),
     ("--batch-size", "0"), ("--batch-size", "100000"), ("--max-pixels", "0"), ("--max-pixels", "99999999999")],
)  # fmt: skip
def test_numeric_options_are_bounded(tmp_path, checkpoint, option, value):
    result = run("photo", photo_file(tmp_path), "--checkpoint", checkpoint, option, value)
    assert_one_line(result, 2, value if option != "-t" else "temperature")
    assert not (tmp_path / "a_color.png").exists()


def test_the_command_line_bounds_are_the_params_bounds():
    """One home: the options' limits are the objects config.py validates params.yaml with."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["decode"]["size"] = NETWORK_SIZE.high + 1
    with pytest.raises(ConfigError, match="decode.size must be a short side"):
        from colorize_core.config import Params, from_dict

        from_dict(Params, params).validate()
    assert (BATCH_SIZE.low, MAX_PIXELS.low) == (1, 1)


def test_outputs_respect_the_umask(tmp_path, checkpoint):
    previous = os.umask(0o022)
    try:
        assert run("photo", photo_file(tmp_path), "--checkpoint", checkpoint).exit_code == 0
        atomic_write_bytes(tmp_path / "x.bin", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a_color.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o644


def test_cleanup_removes_only_temporaries_of_processes_that_are_gone(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        mine = tmp_path / f".a_color.png.{live.pid}.abc123.tmp"
        stale = tmp_path / f".a_color.png.{dead.pid}.def456.tmp"
        mine.write_bytes(b"in progress")
        stale.write_bytes(b"left by a killed run")
        remove_stale_temporaries(tmp_path)
        assert mine.exists() and not stale.exists()
    finally:
        live.kill()


def test_a_folder_of_sub_folders_without_r_says_so(tmp_path, checkpoint):
    photo_file(tmp_path / "top" / "sub")
    result = run("photo", tmp_path / "top", "--checkpoint", checkpoint)
    assert result.exit_code == 1 and "-r descends into its sub-folders" in result.output


def test_a_device_file_is_refused_without_reading_it(tmp_path, checkpoint):
    result = run("photo", "/dev/zero", "--checkpoint", checkpoint, "--out", tmp_path)
    assert result.exit_code == 1 and "/dev/zero: not a regular file" in result.output


# --- streams ----------------------------------------------------------------------------------


class EndlessStream(io.RawIOBase):
    """``head`` then endless bytes; counts what was read."""

    def __init__(self, head: bytes, fill: bytes = b"\x00"):
        self.head, self.fill, self.read_bytes = head, fill, 0

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "read whole"
        data = self.head[:size]
        self.head = self.head[size:]
        data += self.fill * (size - len(data))
        self.read_bytes += len(data)
        return data


def test_garbage_on_stdin_is_refused_after_its_first_mib(checkpoint):
    stream = EndlessStream(b"this is no image" * 8, b"\xff")
    with pytest.raises(ImageError, match="<stdin>: not a readable image"):
        colorize_stream(Colorizer.from_checkpoint(checkpoint), PhotoOptions([0.38]), stream, io.BytesIO())
    assert stream.read_bytes <= 1 << 20


def test_stdin_is_never_read_beyond_the_cap(checkpoint, monkeypatch):
    monkeypatch.setattr(photo_module, "MAX_STREAM_BYTES", 4 << 20)
    buffer = io.BytesIO()
    Image.fromarray(colourful_rgb()).save(buffer, format="PNG")
    stream = EndlessStream(buffer.getvalue())
    with pytest.raises(ImageError, match="more than 4 MiB"):
        photo_module.read_stream(stream, 10**6, photo_module.MAX_STREAM_BYTES)
    assert stream.read_bytes <= (4 << 20) + (1 << 20)


@pytest.mark.slow
@pytest.mark.parametrize("sink", ["closed", "full"])
def test_a_closed_or_full_stdout_is_one_line(tmp_path, checkpoint, sink):
    Image.fromarray(colourful_rgb(600, 800)).save(tmp_path / "a.png")  # more than a pipe's 64 KiB buffer
    command = [sys.executable, "-m", "colorize_core.cli", "photo", "-", "--checkpoint", str(checkpoint)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    with open(tmp_path / "a.png", "rb") as stdin, open("/dev/full", "wb") as full:
        stdout = subprocess.PIPE if sink == "closed" else full
        process = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True)
        if sink == "closed":
            process.stdout.close()  # nobody will read the image
        stderr = process.stderr.read()
        process.wait()
    lines = stderr.strip().splitlines()
    assert process.returncode == 1 and "Traceback" not in stderr and len(lines) == 1, stderr
    assert ("stdout was closed" if sink == "closed" else "<stdout>: No space left on device") in lines[0]


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, key",
    [(lambda p: p["sample"].update(seed=-1), "sample.seed"),
     (lambda p: p["sample"].update(seed="x"), "sample.seed"),
     (lambda p: p["sample"]["train"].update(root="/tmp"), "sample.train.root")],
)  # fmt: skip
def test_configuration_errors_name_the_parameter(tmp_path, edit, key):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(tmp_path / "params.yaml")
    result = run("sample", "--params", tmp_path / "params.yaml", "--out", tmp_path / "lists")
    assert_one_line(result, 1, key)
    assert np.all([not (tmp_path / "lists").exists()])


def test_garbage_on_stdin_is_one_line_on_the_command_line(checkpoint):
    result = CliRunner().invoke(main, ["photo", "-", "--checkpoint", str(checkpoint)], input=b"\xff" * (3 << 20))
    assert_one_line(result, 1, "<stdin>: not a readable image")


def test_a_checkpoint_of_garbage_is_one_line(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"half a file")
    result = run("photo", photo_file(tmp_path / "in"), "--checkpoint", tmp_path / "junk.pt")
    assert_one_line(result, 1, "junk.pt: not a readable checkpoint")
