"""The ``colorize`` command line: one sub-command per pipeline stage, plus ``photo`` and ``serve``.

The DVC stages (``stages/*.py``) call these commands with the paths that ``dvc.yaml`` names.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click

from colorize_core.config import (
    BATCH_SIZE,
    CACHE_MIB,
    CACHE_SECONDS,
    MAX_PIXELS,
    NETWORK_SIZE,
    PORT,
    SMOOTHING,
    TEMPERATURE,
    Limit,
    Params,
    load_params,
)
from colorize_core.constants import (
    DEFAULT_CACHE_MIB,
    DEFAULT_CACHE_SECONDS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_SERVE_HOST,
    DEFAULT_SERVE_PORT,
    DEFAULT_SMOOTHING_SECONDS,
)
from colorize_core.images import ImageError

log = logging.getLogger("colorize_core")

PARAMS_OPTION = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="params.yaml",
    show_default=True,
    help="Parameter file (the sections of dvc.yaml's params).",
)


def friendly_errors(command):
    """Turn expected failures (bad parameters or files, unwritable folders) into one-line errors,
    exit status 1; ``colorize --debug`` shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ValueError, OSError, ImageError) as error:  # ConfigError and CheckpointError are ValueErrors
            if click.get_current_context().find_root().params.get("debug"):
                raise
            raise click.ClickException(one_line(error)) from None

    return wrapper


def one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def within(limit: Limit):
    """A click callback that checks an option against its bounds in :mod:`colorize_core.config`."""

    def check(ctx: click.Context, param: click.Parameter, value):
        if limit.problem(value):
            raise click.BadParameter(limit.problem(value))
        return value

    return check


def suffix_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from colorize_core.inference.photo import suffix_problem

    if suffix_problem(value):
        raise click.BadParameter(suffix_problem(value))
    return value


#: The order of ``colorize --help``: what most users want first, then the stages in pipeline order.
COMMAND_ORDER = ("photo", "video", "serve", "sample", "shard", "histogram", "train", "decode", "evaluate", "export")


class PipelineGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER))


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="colorize", message="colorize %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error, not only its one-line message.")
def main(verbose: bool, debug: bool) -> None:
    """Automatic image colorization (Zhang, Isola & Efros, ECCV 2016) as a DVC pipeline.

    Stages, in order: sample -> shard -> histogram -> train -> decode -> evaluate.
    `dvc repro` runs them all; each is also a command here. `colorize photo` colorizes your
    own photos (with the bundled model, or a checkpoint you trained), `colorize video` a film;
    `colorize serve` colorizes photos in a local web page.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


def stage_command(**paths: str):
    """A pipeline stage's command: ``--params`` (read and validated here, passed on as Params) and
    one option per path, ``--name`` with its default (a trailing ``/`` marks a folder)."""

    def wrap(function):
        @functools.wraps(function)
        def run(params_path: Path, **kwargs):
            return function(load_params(params_path), **kwargs)

        command = friendly_errors(run)
        for name, default in reversed(paths.items()):
            folder = default.endswith("/")
            kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)
            command = click.option(f"--{name.replace('_', '-')}", name, type=kind, default=default.rstrip("/"))(command)
        return main.command(name=function.__name__)(PARAMS_OPTION(command))

    return wrap


@stage_command(out="data/sample/")
def sample(params: Params, out: Path) -> None:
    """Pick the deterministic train / val / test lists (path, synset, class index): OUT/train.csv,
    val.csv, test.csv (and the demo images).

    The source (params `sample.source`) is `demo` (photos bundled with scikit-image), `folder`
    (any folder of images; class = parent folder) or `imagenet` (an ILSVRC CLS-LOC root).
    """
    from colorize_core.data.sample import run_sample

    run_sample(params.sample, out)


@stage_command(lists="data/sample/", out="data/shards/", reports="reports/")
def shard(params: Params, lists: Path, out: Path, reports: Path) -> None:
    """Write WebDataset shards of L and full-grid ab cell indices for every split.

    Unreadable files are skipped and grayscale images excluded, each with a one-line reason,
    listed in REPORTS/shard_skipped.csv and counted in REPORTS/shard.json. Re-running resumes:
    shards whose inputs and parameters are unchanged are kept.
    """
    from colorize_core.data.shard import run_shard

    run_shard(params.shard, lists, out, reports)


@stage_command(shards="data/shards/", out="data/bins.json", figure="reports/bins.png")
def histogram(params: Params, shards: Path, out: Path, figure: Path) -> None:
    """Count the training pixels per ab cell; smooth, prune, and derive the rebalancing weights.

    Writes the bins file (kept bins' ab centres, full-grid -> class mapping, prior, weights) and a
    figure of the kept bins on the ab plane.
    """
    from colorize_core.data.histogram import run_histogram

    run_histogram(params.histogram, shards, out, figure)


@stage_command(
    shards="data/shards/",
    bins="data/bins.json",
    models="models/",
    train_log="reports/train_log.csv",
    figure="reports/loss.png",
)
@click.option(
    "--resume/--no-resume",
    default=None,
    help="Continue from the last complete epoch (fail if there is none) / start afresh. "
    "Default: continue when a state saved with the same settings exists.",
)
def train(
    params: Params, shards: Path, bins: Path, models: Path, train_log: Path, figure: Path, resume: bool | None
) -> None:
    """Train the colorizer with the class-rebalanced cross-entropy.

    Writes MODELS/best.pt (lowest validation loss) and MODELS/last.pt (final epoch), both
    self-contained, the per-epoch log and the loss figure. On several GPUs or machines, start
    the same command with `torchrun --nproc_per_node=N`.
    """
    from colorize_core.train.trainer import run_train

    mode = {None: "auto" if params.train.resume else "never", True: "require", False: "never"}[resume]
    run_train(params.train, shards, bins, models, train_log, figure, resume=mode)


def parse_temperatures(value: str | None, option: str = "--temperature") -> list[float] | None:
    """"0,0.09,0.38" -> [0.0, 0.09, 0.38]; a usage error (exit status 2) names a bad one."""
    if value is None:
        return None
    try:
        temperatures = [float(t) for t in value.split(",") if t.strip()]
        if not temperatures:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=option) from None
    for temperature in temperatures:
        if TEMPERATURE.problem(temperature):
            raise click.BadParameter(TEMPERATURE.problem(temperature), param_hint=option)
    return temperatures


@stage_command(lists="data/sample/", models="models/", out="data/decoded/")
def decode(params: Params, lists: Path, models: Path, out: Path) -> None:
    """Colorize the test split at every temperature with each checkpoint (MODELS/best.pt, last.pt).

    Writes OUT/<checkpoint>/T<t>/<key>.png at the images' full resolution and OUT/manifest.json.
    The temperatures are params `temperatures` plus `T`. Re-running resumes and only adds what
    is missing.
    """
    from colorize_core.device import reuse_freed_memory
    from colorize_core.inference.decode_stage import run_decode

    reuse_freed_memory()
    run_decode(params, lists, models, out)


@main.command()
@click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Parameter file (T, temperatures, evaluate.*). Default: params.yaml in pipeline mode, built-in defaults otherwise.",
)
@click.option("--decoded", "decoded_dir", type=click.Path(file_okay=False, path_type=Path), help="Pipeline mode: the decode stage's output.")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default="models", help="Pipeline mode: folder of best.pt / last.pt.")
@click.option("--checkpoint", "checkpoint_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path), help="Ad-hoc mode: a checkpoint to evaluate (repeatable).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Ad-hoc mode: a folder of <synset>/<image>.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="reports", help="Folder for the tables, metrics, figures and index.html.")
@click.option("-t", "--temperature", "--T", "T", type=float, default=None, callback=within(TEMPERATURE), help="Headline temperature (default: params T).")
@click.option("--temperatures", default=None, help="Comma-separated sweep, e.g. 0,0.09,0.38 (default: params temperatures).")
@click.option(
    "--classifier",
    type=str,
    default=None,
    help="efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 or vgg16 (default: params evaluate.classifier).",
)
@click.option("--vgg16-weights", type=click.Path(dir_okay=False, path_type=Path), default=None, help="torchvision's vgg16-397923af.pth.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@friendly_errors
def evaluate(
    params_path: Path | None,
    decoded_dir: Path | None,
    models_dir: Path,
    checkpoint_paths: tuple[Path, ...],
    images_dir: Path | None,
    out_dir: Path,
    T: float | None,
    temperatures: str | None,
    classifier: str | None,
    vgg16_weights: Path | None,
    device: str | None,
) -> None:
    """Classify every variant of every test image and write tables, metrics, figures and a page.

    Variants: ORIGINAL, each temperature of each checkpoint, and BW IMG (the gray input).
    Pipeline mode (the DVC stage): --decoded DIR --models DIR. Ad-hoc mode, no pipeline needed:
    --checkpoint PATH [--checkpoint PATH ...] --images DIR laid out as <synset>/<image>.
    """
    from colorize_core.evaluate.run import run_evaluate_adhoc, run_evaluate_pipeline

    if (images_dir is None) == (decoded_dir is None):
        raise click.UsageError("give either --decoded (pipeline) or --checkpoint and --images (ad hoc)")
    if images_dir is not None and not checkpoint_paths:
        raise click.UsageError("--images needs at least one --checkpoint")
    if params_path is None and images_dir is None:
        params_path = Path("params.yaml")
    params = load_params(params_path) if params_path is not None else Params()
    if T is not None:
        params.T = T
    params.temperatures = parse_temperatures(temperatures, "--temperatures") or params.temperatures
    if classifier is not None:
        params.evaluate.classifier = classifier
    if vgg16_weights is not None:
        params.evaluate.vgg16_weights = str(vgg16_weights)
    if device is not None:
        params.evaluate.device = device
    params.evaluate.validate("evaluate")
    if images_dir is not None:
        run_evaluate_adhoc(params, list(checkpoint_paths), images_dir, out_dir)
    else:
        run_evaluate_pipeline(params, decoded_dir, models_dir, out_dir)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--half/--full", default=True, help="Store the weights in fp16 (half the file) or as trained.")
@click.option("--size", type=int, default=None, callback=within(NETWORK_SIZE), help="Short side at which it colorizes photos by default (e.g. the pipeline's decode.size). Default: its training size.")
@click.option("-t", "--temperature", "--T", "T", type=float, default=None, callback=within(TEMPERATURE), help="Temperature it is best decoded at (e.g. the pipeline's T), used when none is asked for.")
@friendly_errors
def export(checkpoint: Path, out: Path, half: bool, size: int | None, T: float | None) -> None:
    """Write a checkpoint for shipping: its weights in fp16 by default (how the bundled model
    colorize_core/resources/colorizer.pt is made from models/best.pt)."""
    import dataclasses

    from colorize_core.checkpoint import load_checkpoint

    loaded = dataclasses.replace(load_checkpoint(checkpoint), view_size=size, default_T=T)
    (loaded.half() if half else loaded).save(out)
    click.echo(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({loaded.config.arch}, epoch {loaded.epoch})", err=True)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A trained checkpoint (models/best.pt). Default: the model bundled with the package.")
@click.option("-t", "--temperature", "--T", "T", default=None, help="Temperature, or several: 0,0.09,0.38 (0 = the mode, 1 = the mean). Default: the model's own (0.7 for the bundled one), else 0.38.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder (mirrors sub-folders). Default: beside each input.")
@click.option("--suffix", default="_color", show_default=True, callback=suffix_option, help="Added to each output's name (no path separator).")
@click.option("--format", "output_format", type=click.Choice(["png", "jpg", "same"]), default="same", show_default=True)
@click.option("--size", type=int, default=None, callback=within(NETWORK_SIZE), help="Short side of the network's view of a photo (aspect ratio kept). Default: the checkpoint's training size.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", type=int, default=None, callback=within(BATCH_SIZE), help="Images per network batch. Default: 8 on a GPU, 1 on the CPU.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of folder inputs.")
@click.option("--sheet", is_flag=True, help="Also write a contact sheet per input: the input and each T side by side.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (never done otherwise).")
@click.option("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, callback=within(MAX_PIXELS), show_default=True, help="Refuse images whose header claims more pixels.")
@friendly_errors
def photo(
    inputs: tuple[Path, ...],
    checkpoint: Path | None,
    T: str,
    out_dir: Path | None,
    suffix: str,
    output_format: str,
    size: int | None,
    device: str,
    batch_size: int | None,
    recursive: bool,
    sheet: bool,
    overwrite: bool,
    max_pixels: int,
) -> None:
    """Colorize your own photos: image files, folders, or - (one image from stdin to stdout).

    Grayscale scans (8- or 16-bit, 1-bit, with alpha) and colour photos (reduced to their
    lightness) alike; each output has the input's full resolution, exact lightness, EXIF
    orientation and metadata. Unreadable inputs are skipped with their reason; the exit status
    is 1 when anything was skipped.

    \b
    Examples:
      colorize photo old.jpg                      (the bundled model)
      colorize photo old.jpg --checkpoint models/best.pt
      colorize photo scans/ -r --out coloured/ -t 0,0.09,0.38 --sheet --checkpoint models/best.pt
      cat old.png | colorize photo - --checkpoint models/best.pt > coloured.png
    """
    import os
    import sys

    from colorize_core.device import reuse_freed_memory
    from colorize_core.inference.colorizer import Colorizer
    from colorize_core.inference.photo import PhotoOptions, colorize_files, colorize_stream

    requested = parse_temperatures(T)
    stream = Path("-") in inputs
    if stream and len(inputs) > 1:
        raise click.UsageError("- (stdin) cannot be combined with other inputs")
    if (requested and len(requested) > 1) or len(inputs) > 1 or any(p.is_dir() for p in inputs):
        Colorizer.load_kernel_in_background()  # a sweep or a folder composes with the compiled kernel
        reuse_freed_memory()  # and allocates the same arrays photo after photo (one photo: less memory without)
    if checkpoint is None:
        colorizer = Colorizer.pretrained(device, size)
    else:
        colorizer = Colorizer.from_checkpoint(checkpoint, device, size)
    temperatures = requested or [colorizer.default_T]
    if stream and len(temperatures) > 1 and not sheet:
        raise click.UsageError("- writes one image: give one -t, or --sheet for all of them side by side")
    options = PhotoOptions(
        temperatures=temperatures,
        out_dir=out_dir,
        suffix=suffix,
        format=output_format,
        sheet=sheet,
        overwrite=overwrite,
        recursive=recursive,
        batch_size=batch_size or (8 if colorizer.device.type == "cuda" else 1),
        max_pixels=max_pixels,
    )
    if stream:
        try:
            colorize_stream(colorizer, options, sys.stdin.buffer, sys.stdout.buffer)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            raise click.ClickException("stdout was closed before the image was written") from None
        return
    summary = colorize_files(list(inputs), colorizer, options)
    click.echo(summary.report(), err=True)
    if summary.skipped:
        sys.exit(1)


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Output film: .mp4 (H.264), .mov or .mkv. Default: SOURCE's name + _color.mp4, beside it.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A trained checkpoint (models/best.pt). Default: the model bundled with the package.")
@click.option("-t", "--temperature", "--T", "T", type=float, default=None, callback=within(TEMPERATURE), help="Temperature (0 = the mode, 1 = the mean). Default: the model's own (0.7 for the bundled one), else 0.38.")
@click.option("--smooth", type=float, default=DEFAULT_SMOOTHING_SECONDS, callback=within(SMOOTHING), show_default=True, help="Time constant in seconds of the average of the predicted colour distributions over frames (reset at scene cuts); 0 decodes every frame on its own, as `colorize photo` would.")
@click.option("--lossless", is_flag=True, help="Write FFV1 (lossless RGB; .mkv) instead of H.264.")
@click.option("--size", type=int, default=None, callback=within(NETWORK_SIZE), help="Short side of the network's view of a frame (aspect ratio kept). Default: the checkpoint's training size.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", type=int, default=None, callback=within(BATCH_SIZE), help="Frames per network batch. Default: 8 on a GPU, 1 on the CPU.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output (never the input).")
@friendly_errors
def video(
    source: Path,
    out: Path | None,
    checkpoint: Path | None,
    T: float | None,
    smooth: float,
    lossless: bool,
    size: int | None,
    device: str,
    batch_size: int | None,
    overwrite: bool,
) -> None:
    """Colorize a film: every frame at full resolution, its sound and subtitles copied unchanged.

    Reads any container and codec that FFmpeg (through PyAV) reads; writes H.264 in MP4 by default
    with the input's frame count, timestamps, size and pixel aspect. Colours are averaged over
    time so that they do not flicker (--smooth); a scene cut starts afresh. A truncated or
    damaged input gives every frame that decodes and says where it stopped or frames are
    missing (exit status 1).

    \b
    Examples:
      colorize video old_film.mkv                          (-> old_film_color.mp4)
      colorize video old_film.mkv --out film.mkv --smooth 0 --checkpoint models/best.pt
    """
    import sys

    try:
        from colorize_core.inference.video import VideoOptions, colorize_video
    except ModuleNotFoundError as error:
        if error.name != "av":
            raise
        raise click.ClickException("colorize video needs PyAV: pip install 'colorize[video]' (or pip install av)") from None
    from colorize_core.device import reuse_freed_memory
    from colorize_core.inference.colorizer import Colorizer

    reuse_freed_memory()
    Colorizer.load_kernel_in_background()  # a film's frames compose with the compiled kernel, as a folder's
    if checkpoint is None:
        colorizer = Colorizer.pretrained(device, size, compiled=True)
    else:
        colorizer = Colorizer.from_checkpoint(checkpoint, device, size, compiled=True)
    options = VideoOptions(
        temperature=colorizer.default_T if T is None else T,
        smooth=smooth,
        batch_size=batch_size or (8 if colorizer.device.type == "cuda" else 1),
        lossless=lossless,
        overwrite=overwrite,
    )
    summary = colorize_video(source, out, colorizer, options)
    click.echo(summary.report(), err=True)
    if summary.damaged:
        sys.exit(1)


@main.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A trained checkpoint. Default: the model bundled with the package, else models/best.pt.")
@click.option("--host", default=DEFAULT_SERVE_HOST, show_default=True, help="Address to listen on; the default is reachable from this machine only.")
@click.option("--port", type=int, default=DEFAULT_SERVE_PORT, callback=within(PORT), show_default=True)
@click.option("--size", type=int, default=None, callback=within(NETWORK_SIZE), help="Short side of the network's view of a photo. Default: the checkpoint's own.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, callback=within(MAX_PIXELS), show_default=True, help="Refuse uploads whose header claims more pixels.")
@click.option("--cache-mib", type=int, default=DEFAULT_CACHE_MIB, callback=within(CACHE_MIB), show_default=True, help="Memory for the photos' log-probabilities and lightness (least recently used dropped first).")
@click.option("--cache-seconds", type=int, default=DEFAULT_CACHE_SECONDS, callback=within(CACHE_SECONDS), show_default=True, help="Drop a photo from the cache this long after its last use.")
@friendly_errors
def serve(
    checkpoint: Path | None,
    host: str,
    port: int,
    size: int | None,
    device: str,
    max_pixels: int,
    cache_mib: int,
    cache_seconds: int,
) -> None:
    """A local web page to colorize photos: drag and drop, a live temperature slider, a
    before | after view, downloads; and the HTTP API it uses (POST /colorize, /openapi.json).

    Needs the serve extra: pip install -e ".[serve]". Uploads go to a private temporary folder and
    are deleted once read; only their log-probabilities stay, in memory, for the slider.
    """
    try:
        from colorize_core.serve.app import ServeSettings, create_app, run_server
    except ImportError as error:
        raise click.ClickException(f'colorize serve needs the serve extra ({error.name} is missing): pip install -e ".[serve]"') from None
    from colorize_core.device import reuse_freed_memory
    from colorize_core.inference.colorizer import Colorizer
    from colorize_core.serve.model_info import find_checkpoint

    path = find_checkpoint(checkpoint, Path.cwd())
    reuse_freed_memory()
    Colorizer.load_kernel_in_background()  # loaded before the first upload needs it, not during it
    colorizer = Colorizer.from_checkpoint(path, device, size, compiled=True)  # every T change re-composes
    settings = ServeSettings(max_pixels=max_pixels, cache_bytes=cache_mib << 20, cache_seconds=cache_seconds)
    click.echo(f"colorize serve: {path} on http://{host}:{port}/ (Ctrl+C stops it)", err=True)
    run_server(create_app(colorizer, path, settings), host, port)


if __name__ == "__main__":
    main()
