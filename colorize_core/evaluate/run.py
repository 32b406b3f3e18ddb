"""The two ways to evaluate: the DVC stage (reads the decode stage's images) and ad hoc (any
checkpoint on any folder of ``<synset>/<image>``, colorizing on the fly, no pipeline needed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from colorize_core.checkpoint import Checkpoint, load_checkpoint
from colorize_core.config import Params
from colorize_core.data.sample import list_folder
from colorize_core.device import resolve_device
from colorize_core.evaluate.classifiers import load_classifier
from colorize_core.evaluate.evaluation import decoded_colorizations, evaluate_images, live_colorizations
from colorize_core.evaluate.report import ReportInfo, write_report
from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.decode_stage import MANIFEST, TestImage

log = logging.getLogger(__name__)


def describe_checkpoint(path: Path, checkpoint: Checkpoint) -> str:
    c = checkpoint.config
    return (
        f"{path} ({c.arch} width {c.width:g}, {c.num_classes} bins, {checkpoint.train_size}×{checkpoint.train_size}; "
        f"epoch {checkpoint.epoch}, validation loss {checkpoint.val_loss:.4f})"
    )


def banner(checkpoint: Checkpoint, name: str, data: str, classifier: str) -> str:
    """One sentence: which model and data made the page."""
    c = checkpoint.config
    return (
        f"Model: {c.arch} width {c.width:g}, checkpoint {name} (epoch {checkpoint.epoch}, trained at "
        f"{checkpoint.train_size}×{checkpoint.train_size}). Test photos: {data}. Judged by {classifier}."
    )


def describe_data(params: Params) -> str:
    """Where the test photos came from, from params.sample."""
    test = params.sample.test
    if params.sample.source == "demo":
        return "the embedded demo photos (scikit-image and matplotlib samples)"
    return ", ".join(str(Path(root) / test.subdir) for root in test.roots)


def _info(
    params: Params,
    checkpoints: dict[str, tuple[Path, Checkpoint]],
    temperatures: list[float],
    same_as: dict[str, str] | None = None,
    data: str = "",
    decoded_dir: Path | None = None,
) -> ReportInfo:
    names = list(checkpoints)
    headline = "best" if "best" in names else names[0]
    also = {name: [other for other, first in (same_as or {}).items() if first == name] for name in names}
    return ReportInfo(
        classifier=params.evaluate.classifier,
        checkpoints={
            name: describe_checkpoint(path, ck) + "".join(f"; `{other}` has the same weights" for other in also[name])
            for name, (path, ck) in checkpoints.items()
        },
        temperatures=temperatures,
        T=params.T,
        headline_checkpoint=headline,
        figure_images=params.evaluate.figure_images,
        gallery_images=params.evaluate.gallery_images,
        banner=banner(checkpoints[headline][1], headline, data, params.evaluate.classifier),
        demo=params.sample.source == "demo" and decoded_dir is not None,
        decoded_dir=decoded_dir,
    )


def _run(params, items, colorizations, checkpoints, out_dir: Path, **about) -> dict:
    """Score, then write the report; ``about``: _info's same_as, data and decoded_dir."""
    device = resolve_device(params.evaluate.device)
    classifier = load_classifier(params.evaluate.classifier, device, params.evaluate.vgg16_weights)
    temperatures = params.sweep
    info = _info(params, checkpoints, temperatures, **about)
    bins = checkpoints[info.headline_checkpoint][1].bins
    evaluation = evaluate_images(
        items,
        colorizations,
        list(checkpoints),
        temperatures,
        classifier,
        bins,
        thumbnails_for=max(params.evaluate.figure_images, params.evaluate.gallery_images),
    )
    metrics = write_report(evaluation, info, out_dir)
    headline = metrics[info.headline_checkpoint]
    log.info(
        "evaluate: %s at T = %g: top-1 %.3f (original %.3f, gray %.3f), AuC %.3f -> %s",
        info.headline_checkpoint,
        params.T,
        headline["top1"] if headline["top1"] is not None else float("nan"),
        metrics["original"]["top1"] if metrics["original"]["top1"] is not None else float("nan"),
        metrics["grayscale"]["top1"] if metrics["grayscale"]["top1"] is not None else float("nan"),
        headline["auc"],
        out_dir / "index.html",
    )
    return metrics


def run_evaluate_pipeline(params: Params, decoded_dir: Path, models_dir: Path, out_dir: Path) -> dict:
    """Evaluate the decode stage's output (the DVC ``evaluate`` stage)."""
    manifest = json.loads((Path(decoded_dir) / MANIFEST).read_text())
    missing = set(params.sweep) - set(manifest["temperatures"])
    if missing:
        raise ValueError(f"{decoded_dir}: not decoded at T = {sorted(missing)}; run the decode stage")
    checkpoints = {name: (models_dir / f"{name}.pt", load_checkpoint(models_dir / f"{name}.pt")) for name in manifest["checkpoints"]}
    items = [TestImage(**image) for image in manifest["images"]]
    return _run(
        params,
        items,
        decoded_colorizations(decoded_dir),
        checkpoints,
        out_dir,
        same_as=manifest.get("same_as", {}),
        data=describe_data(params),
        decoded_dir=Path(decoded_dir),
    )


def run_evaluate_adhoc(params: Params, checkpoint_paths: list[Path], images_dir: Path, out_dir: Path) -> dict:
    """Evaluate checkpoints on a folder of ``<synset>/<image>``, colorizing on the fly."""
    checkpoints = {path.stem: (path, load_checkpoint(path)) for path in checkpoint_paths}
    if len(checkpoints) != len(checkpoint_paths):
        raise ValueError("--checkpoint: give checkpoints with different file names")
    records = list_folder(images_dir, "")
    if not records:
        raise ValueError(f"{images_dir}: no images found (expected <synset>/<image>)")
    items = [TestImage(f"{i:06d}", r.path, r.synset, r.class_index) for i, r in enumerate(records)]
    device = resolve_device(params.evaluate.device)
    colorizers = {name: Colorizer(checkpoint, device) for name, (_, checkpoint) in checkpoints.items()}
    data = f"{images_dir} (ad hoc)"
    return _run(params, items, live_colorizations(colorizers, params.sweep), checkpoints, out_dir, data=data)
