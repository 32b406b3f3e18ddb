"""Tables, metrics, figures and the browsable page of an evaluation.

Writes into one folder:

- ``classification.csv``: one row per image × variant × checkpoint;
- ``classification.md``: per-image blocks in the study's style, then the summary tables;
- ``real_grayscale.csv`` and ``real_grayscale.md``: the genuinely grayscale test photos (no colour
  truth), the classifier on the gray photo against each colorization;
- ``metrics.json``: the headline numbers (checkpoint ``best`` at temperature ``T``), for
  ``dvc metrics show`` and ``dvc exp show``;
- ``figures/temperature_sweep.png`` (the study's Figure 4) and ``figures/metrics_vs_T.png``;
- ``index.html``: one self-contained page (images embedded) with the figures, the summary and a
  gallery of ORIGINAL / gray / colorized images with the classifier's labels.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from colorize_core.constants import GRAYSCALE_MAX_CHROMA
from colorize_core.evaluate.evaluation import (
    GRAYSCALE,
    NO_CHECKPOINT,
    ORIGINAL,
    THUMBNAIL_SIDE,
    Evaluation,
    variant_name,
)
from colorize_core.figures import pyplot, save_figure
from colorize_core.inference.decode_stage import temperature_dir
from colorize_core.io import atomic_output, atomic_write_json, atomic_write_text

#: Fewer images than this make a curve (or a mean) too noisy to compare runs by; the page says so.
MIN_IMAGES_FOR_CURVES = 20
#: The figures a run is judged by, first in metrics.json (and so in `dvc exp show`).
HEADLINE_KEYS = ("top1", "auc", "auc_rebalanced", "colourfulness_diff")
SUMMARY_COLUMNS = {
    "images": "images",
    "top1": "top-1 acc.",
    "top5": "top-5 acc.",
    "true_confidence": "true-class conf.",
    "auc": "AuC",
    "auc_rebalanced": "AuC rebal.",
    "psnr": "PSNR (dB)",
    "colourfulness": "colourfulness",
    "colourfulness_diff": "Δ colourfulness",
}


@dataclass
class ReportInfo:
    """What the report says about how it was made."""

    classifier: str
    checkpoints: dict[str, str]  # name -> one-line description (path, epoch, validation loss)
    temperatures: list[float]
    T: float  # headline temperature
    headline_checkpoint: str
    figure_images: int = 4
    gallery_images: int = 24
    notes: list[str] = field(default_factory=list)
    banner: str = ""  # which model and data made the page, one sentence
    demo: bool = False  # the embedded toy demo: the page says its colours mean nothing
    decoded_dir: Path | None = None  # the decode stage's full-resolution images, linked from the thumbnails


def variant_order(temperatures: list[float]) -> list[str]:
    return [ORIGINAL, *(variant_name(T) for T in temperatures), GRAYSCALE]


def summary_table(rows: list[dict], checkpoint: str, temperatures: list[float]) -> pd.DataFrame:
    """Per variant, the mean of every metric over the images (accuracies over labelled images)."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["checkpoint"].isin([checkpoint, NO_CHECKPOINT])]
    labelled = frame[frame["true_class"] >= 0]
    table = pd.DataFrame(index=pd.Index(variant_order(temperatures), name="variant"))
    table["images"] = frame.groupby("variant")["image"].nunique()
    table["top1"] = labelled.groupby("variant")["top1_correct"].mean()
    table["top5"] = labelled.groupby("variant")["top5_correct"].mean()
    table["true_confidence"] = labelled.groupby("variant")["true_confidence"].mean()
    finite_psnr = frame["psnr"].replace(np.inf, np.nan)
    table["auc"] = frame.groupby("variant")["auc"].mean()
    table["auc_rebalanced"] = frame.groupby("variant")["auc_rebalanced"].mean()
    table["psnr"] = finite_psnr.groupby(frame["variant"]).mean()
    table["colourfulness"] = frame.groupby("variant")["colourfulness"].mean()
    table["colourfulness_diff"] = frame.groupby("variant")["colourfulness_diff"].mean()
    return table


GRAYSCALE_COLUMNS = ("images", "top1", "top5", "true_confidence")


def grayscale_table(rows: list[dict], checkpoint: str, temperatures: list[float]) -> pd.DataFrame:
    """Real grayscale photos: per variant (the gray photo, each T), images and classifier scores."""
    table = pd.DataFrame(index=pd.Index([GRAYSCALE, *(variant_name(T) for T in temperatures)], name="variant"))
    if not rows:
        return table.assign(**{column: np.nan for column in GRAYSCALE_COLUMNS})
    frame = pd.DataFrame(rows)
    frame = frame[frame["checkpoint"].isin([checkpoint, NO_CHECKPOINT])]
    labelled = frame[frame["true_class"] >= 0]
    table["images"] = frame.groupby("variant")["image"].nunique()
    table["top1"] = labelled.groupby("variant")["top1_correct"].mean()
    table["top5"] = labelled.groupby("variant")["top5_correct"].mean()
    table["true_confidence"] = labelled.groupby("variant")["true_confidence"].mean()
    return table


def one_table(rows: list[dict], info: ReportInfo, table_of=summary_table) -> pd.DataFrame:
    """Every checkpoint's colorizations in one table, between the rows that need no checkpoint
    (the original first, the gray input last). A row is ``t=0.38``, or ``last t=0.38`` when
    several checkpoints are scored."""
    tables = {c: table_of(rows, c, info.temperatures) for c in info.checkpoints}
    first = next(iter(tables.values()))
    colorized = [variant_name(T) for T in info.temperatures]
    parts = [first.loc[[v for v in first.index if v == ORIGINAL]]]
    for checkpoint, table in tables.items():
        part = table.loc[colorized]
        if len(tables) > 1:
            part.index = pd.Index([f"{checkpoint} {v}" for v in colorized], name="variant")
        parts.append(part)
    parts.append(first.loc[[GRAYSCALE]])
    return pd.concat(parts)


def _format_table(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy().astype(object)
    for column in shown.columns:
        for variant in shown.index:
            value = table.loc[variant, column]
            if column == "images":
                shown.loc[variant, column] = f"{int(value)}" if not pd.isna(value) else "0"
            elif column == "psnr" and variant == ORIGINAL:
                shown.loc[variant, column] = "∞"
            else:
                shown.loc[variant, column] = "–" if pd.isna(value) else f"{value:.3f}" if column != "psnr" else f"{value:.2f}"
    return shown.rename(columns=SUMMARY_COLUMNS)


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


def headline_metrics(rows: list[dict], info: ReportInfo) -> dict:
    """The numbers ``dvc metrics show`` compares: each checkpoint at T, the gray input and the
    original. The four headline figures come first, so that ``dvc exp show`` shows them first."""
    metrics: dict = {}
    tables = {checkpoint: summary_table(rows, checkpoint, info.temperatures) for checkpoint in info.checkpoints}
    for index, (checkpoint, table) in enumerate(tables.items()):
        keys = [*HEADLINE_KEYS, *(k for k in SUMMARY_COLUMNS if k not in HEADLINE_KEYS and k != "images")]
        metrics[checkpoint] = {k: _number(table.loc[variant_name(info.T), k]) for k in keys}
        if index == 0:
            metrics["grayscale"] = {
                k: _number(table.loc[GRAYSCALE, k]) for k in ("top1", "auc", "auc_rebalanced", "top5", "true_confidence", "psnr")
            }
    first = next(iter(tables.values()))
    metrics["original"] = {k: _number(first.loc[ORIGINAL, k]) for k in ("top1", "top5", "true_confidence", "colourfulness")}
    metrics.update(T=info.T, classifier=info.classifier, images=int(first.loc[ORIGINAL, "images"]))
    frame = pd.DataFrame(rows)
    metrics["labelled_images"] = int(frame.loc[frame["true_class"] >= 0, "image"].nunique())
    return metrics


def grayscale_metrics(rows: list[dict], info: ReportInfo) -> dict:
    """Real grayscale photos in ``metrics.json``: their number, top-1 of the gray photo and of
    the headline colorization."""
    table = grayscale_table(rows, info.headline_checkpoint, info.temperatures)
    return {
        "images": int(table["images"].fillna(0).max()),
        "gray_top1": _number(table.loc[GRAYSCALE, "top1"]),
        "colorized_top1": _number(table.loc[variant_name(info.T), "top1"]),
    }


# --- figures ----------------------------------------------------------------------------------


def too_few_warnings(rows: list[dict]) -> list[str]:
    """One sentence per curve drawn from fewer than MIN_IMAGES_FOR_CURVES images."""
    frame = pd.DataFrame(rows)
    images = frame["image"].nunique()
    labelled = frame.loc[frame["true_class"] >= 0, "image"].nunique()
    warnings = []
    if labelled < MIN_IMAGES_FOR_CURVES:
        warnings.append(
            f"Accuracy curves: only {labelled} test images have an ImageNet label "
            f"(fewer than {MIN_IMAGES_FOR_CURVES}), too few to compare runs by."
        )
    if images < MIN_IMAGES_FOR_CURVES:
        warnings.append(
            f"AuC and colourfulness curves: only {images} test images (fewer than {MIN_IMAGES_FOR_CURVES}), "
            "too few to compare runs by."
        )
    return warnings


def letterboxed(rgb: np.ndarray, side: int) -> np.ndarray:
    """The image centred on a light-gray (side, side, 3) square, so that rows of a figure are even."""
    canvas = np.full((side, side, 3), 240, np.uint8)
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale != 1:
        rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC))
        h, w = rgb.shape[:2]
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = rgb
    return canvas


def plot_temperature_sweep(evaluation: Evaluation, info: ReportInfo, path: Path) -> None:
    """The study's Figure 4: one row per image, the gray input first, one column per T, the
    original last; every cell the same square, so the rows are even."""
    plt = pyplot()

    keys = list(evaluation.thumbnails)[: info.figure_images]
    columns = [
        (NO_CHECKPOINT, GRAYSCALE),
        *((info.headline_checkpoint, variant_name(T)) for T in info.temperatures),
        (NO_CHECKPOINT, ORIGINAL),
    ]
    titles = {ORIGINAL: "original", GRAYSCALE: "gray input"}
    fig, axes = plt.subplots(
        len(keys), len(columns), figsize=(2.2 * len(columns), 2.2 * len(keys)), squeeze=False, constrained_layout=True
    )
    for r, key in enumerate(keys):
        for c, column in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(letterboxed(evaluation.thumbnails[key][column], THUMBNAIL_SIDE))
            ax.axis("off")
            if r == 0:
                ax.set_title(titles.get(column[1], column[1]), fontsize=11)
    fig.suptitle(f"Annealed-mean temperature sweep (checkpoint {info.headline_checkpoint})")
    save_figure(fig, path, dpi=100)


def plot_metrics_vs_temperature(rows: list[dict], info: ReportInfo, path: Path) -> None:
    """Top-1 accuracy, AuC and colourfulness against T, per checkpoint, with the original and gray."""
    plt = pyplot()

    frame = pd.DataFrame(rows)
    counts = {
        "top1": frame.loc[frame["true_class"] >= 0, "image"].nunique(),
        "auc": frame["image"].nunique(),
        "colourfulness": frame["image"].nunique(),
    }
    panels = [("top1", "top-1 accuracy"), ("auc", "AuC"), ("colourfulness", "colourfulness")]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8), constrained_layout=True)
    tables = {c: summary_table(rows, c, info.temperatures) for c in info.checkpoints}
    for ax, (column, label) in zip(axes, panels):
        for (checkpoint, table), marker in zip(tables.items(), "os^v"):
            values = [table.loc[variant_name(T), column] for T in info.temperatures]
            ax.plot(info.temperatures, values, marker=marker, label=f"colorized ({checkpoint})")
        first = next(iter(tables.values()))
        for variant, style in ((ORIGINAL, "g--"), (GRAYSCALE, "k:")):
            value = first.loc[variant, column]
            if not pd.isna(value):
                ax.axhline(value, color=style[0], linestyle=style[1:], label=variant.lower())
        ax.axvline(info.T, color="0.75", linewidth=0.8)
        ax.set_xlabel("temperature T")
        few = counts[column] < MIN_IMAGES_FOR_CURVES
        ax.set_title(f"{label}\n(only {counts[column]} images: too few to compare)" if few else label, fontsize=10 if few else 12)
    axes[0].legend(fontsize=8)
    save_figure(fig, path, dpi=100)


# --- markdown ---------------------------------------------------------------------------------


def _label(row: pd.Series) -> str:
    mark = "" if pd.isna(row["top1_correct"]) else (" ✓" if row["top1_correct"] else " ✗")
    return f"{row['top1_name']} ({row['top1_confidence']:.2f}){mark}"


def _header(info: ReportInfo, evaluation: Evaluation, with_banner: bool = True) -> list[str]:
    frame = pd.DataFrame(evaluation.rows)
    lines = [
        *([f"- **{DEMO_BANNER}**"] if info.demo and with_banner else []),
        *([f"- {info.banner}"] if info.banner and with_banner else []),
        f"- classifier: **{info.classifier}**",
        *(f"- checkpoint **{name}**: {text}" for name, text in info.checkpoints.items()),
        f"- images: **{frame['image'].nunique()}** ({frame.loc[frame['true_class'] >= 0, 'image'].nunique()} with an "
        f"ImageNet label); skipped: {len(evaluation.skipped)}",
        f"- temperatures: {', '.join(f'{T:g}' for T in info.temperatures)}; headline T = {info.T:g}",
        *(f"- {note}" for note in info.notes),
    ]
    return lines


def write_grayscale_markdown(evaluation: Evaluation, info: ReportInfo, path: Path) -> None:
    images = len({row["image"] for row in evaluation.grayscale_rows})
    lines = [
        "# Real grayscale photos",
        "",
        f"Test photos with no colour (|ab| never above {GRAYSCALE_MAX_CHROMA:g}): {images}. No colour truth, so the "
        f"classifier ({info.classifier}) alone compares the gray photo with its colorizations.",
        "",
    ]
    lines += [_format_table(one_table(evaluation.grayscale_rows, info, grayscale_table)).to_markdown(), ""]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_markdown(evaluation: Evaluation, info: ReportInfo, path: Path) -> None:
    frame = pd.DataFrame(evaluation.rows)
    lines = ["# Classification of colorized images", "", *_header(info, evaluation), ""]
    lines += ["## Summary", "", _format_table(one_table(evaluation.rows, info)).to_markdown(), ""]
    lines += ["## Per image", "", f"Checkpoint `{info.headline_checkpoint}`; label (confidence), ✓ correct, ✗ wrong.", ""]
    order = variant_order(info.temperatures)
    for key in evaluation.thumbnails:
        rows = frame[(frame["image"] == key) & frame["checkpoint"].isin([info.headline_checkpoint, NO_CHECKPOINT])]
        first = rows.iloc[0]
        truth = f"{first['true_name']} ({first['synset']})" if first["true_class"] >= 0 else "no ImageNet label"
        lines += [f"**{key}** `{Path(first['path']).name}`: {truth}", ""]
        by_variant = {row["variant"]: _label(row) for _, row in rows.iterrows()}
        lines += ["| " + " | ".join(order) + " |", "|" + "---|" * len(order)]
        lines += ["| " + " | ".join(by_variant.get(v, "") for v in order) + " |", ""]
    atomic_write_text(path, "\n".join(lines) + "\n")


# --- HTML -------------------------------------------------------------------------------------


def _data_uri(rgb: np.ndarray, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, quality=88)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _png_file_uri(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.summary { border-collapse: collapse; font-size: 0.9em; }
table.summary td, table.summary th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
figure.fig img { max-width: 100%; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 18px; }
.item { border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
.item .row { display: flex; gap: 6px; }
.item figure { margin: 0; flex: 1; text-align: center; }
.item img { width: 100%; height: 170px; object-fit: contain; background: #f4f4f4; }
.item figcaption { font-size: 0.78em; }
.ok { color: #1a7f37; } .wrong { color: #b42318; }
.banner { background: #eef4ff; border: 1px solid #b6cdf5; border-radius: 6px; padding: 8px 12px; }
.banner.demo { background: #fff4d6; border-color: #e8c460; }
.warn { color: #8a5a00; }
a.full { cursor: zoom-in; }
#lightbox { position: fixed; inset: 0; background: rgba(0, 0, 0, 0.85); display: none; cursor: zoom-out;
            align-items: center; justify-content: center; }
#lightbox img { max-width: 96vw; max-height: 96vh; }
"""

#: Clicking a thumbnail shows its full-resolution file over the page (the gray input: the original
#: shown through a grayscale filter); a middle click still opens the file in a new tab.
LIGHTBOX_SCRIPT = """
<div id="lightbox"><img alt="full size"></div>
<script>
const box = document.getElementById("lightbox"), big = box.querySelector("img");
document.querySelectorAll("a.full").forEach(a => a.addEventListener("click", event => {
  event.preventDefault();
  big.src = a.href;
  big.style.filter = a.dataset.filter || "";
  box.style.display = "flex";
}));
box.addEventListener("click", () => { box.style.display = "none"; big.removeAttribute("src"); });
</script>
"""

#: What the page says about the toy demo.
DEMO_BANNER = (
    "Toy demo: a tiny network trained for about a minute on crops of the photos that scikit-image and "
    "matplotlib ship. Its colours say nothing about the method; see the README for the real experiments."
)


def _caption(row: pd.Series | None, title: str) -> str:
    if row is None:
        return f"<b>{html.escape(title)}</b>"
    css = "" if pd.isna(row["top1_correct"]) else ("ok" if row["top1_correct"] else "wrong")
    return (
        f"<b>{html.escape(title)}</b><br><span class='{css}'>{html.escape(row['top1_name'])} "
        f"{row['top1_confidence']:.2f}</span>"
    )


def full_size_links(key: str, source: str, info: ReportInfo, out_dir: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(checkpoint, variant) -> (href relative to the page, CSS filter) of the full-resolution
    files behind a gallery item's thumbnails: the source photo (also behind the gray input, seen
    through a grayscale filter) and the decode stage's images. Files that do not exist get no link."""
    def href(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()

    links = {}
    if Path(source).is_file():
        links[NO_CHECKPOINT, ORIGINAL] = (href(Path(source)), "")
        links[NO_CHECKPOINT, GRAYSCALE] = (href(Path(source)), "grayscale(1)")
    for checkpoint in info.checkpoints if info.decoded_dir else []:
        for T in info.temperatures:
            decoded = info.decoded_dir / checkpoint / temperature_dir(T) / f"{key}.png"
            if decoded.is_file():
                links[checkpoint, variant_name(T)] = (href(decoded), "")
    return links


def _thumbnail_html(rgb: np.ndarray, alt: str, link: tuple[str, str] | None) -> str:
    image = f"<img alt='{html.escape(alt)}' src='{_data_uri(rgb)}'>"
    if link is None:
        return image
    url, css_filter = link
    return f"<a class='full' href='{html.escape(url)}' data-filter='{css_filter}' target='_blank'>{image}</a>"


def _gallery_item(key: str, frame: pd.DataFrame, thumbnails: dict, cells: list, links: dict | None = None) -> str:
    """One image of the gallery: a thumbnail per (checkpoint, variant) cell with the classifier's
    label, each opening its full-resolution file where ``links`` has one."""
    rows = frame[frame["image"] == key]
    first = rows.iloc[0]
    truth = f"{first['true_name']}" if first["true_class"] >= 0 else "no ImageNet label"

    def row_of(checkpoint: str, variant: str):
        match = rows[(rows["checkpoint"] == checkpoint) & (rows["variant"] == variant)]
        return match.iloc[0] if len(match) else None

    figures_html = "".join(
        f"<figure>{_thumbnail_html(thumbnails[variant], f'{title} {key}', (links or {}).get(variant))}"
        f"<figcaption>{_caption(row_of(*variant), title)}</figcaption></figure>"
        for variant, title in cells
    )
    return (
        f"<div class='item'><div>{html.escape(key)} · {html.escape(Path(first['path']).name)} · "
        f"truth: {html.escape(truth)}</div><div class='row'>{figures_html}</div></div>"
    )


def write_html(evaluation: Evaluation, info: ReportInfo, figures: dict[str, Path], path: Path) -> None:
    frame = pd.DataFrame(evaluation.rows)
    headline = variant_name(info.T)
    banners = ([f"<div class='banner demo'><b>{html.escape(DEMO_BANNER)}</b></div>"] if info.demo else []) + (
        [f"<div class='banner'>{html.escape(info.banner)}</div>"] if info.banner else []
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Colorization report</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        "<h1>Automatic colorization: evaluation</h1>",
        *banners,
        "<ul>" + "".join(f"<li>{html.escape(line[2:]).replace('**', '')}</li>" for line in _header(info, evaluation, with_banner=False)) + "</ul>",
        "<h2>Summary</h2>",
        _format_table(one_table(evaluation.rows, info)).to_html(classes="summary", border=0, index_names=False),
        "<h2>Figures</h2>",
        *(f"<p class='warn'>{html.escape(warning)}</p>" for warning in too_few_warnings(evaluation.rows)),
    ]
    for caption, figure in figures.items():
        parts.append(
            f"<figure class='fig'><img alt='{html.escape(caption)}' src='{_png_file_uri(figure)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts += [
        f"<h2>Gallery</h2><p>Original, gray input and colorization at T = {info.T:g} "
        f"(checkpoint {html.escape(info.headline_checkpoint)}), with the classifier's top-1 label and confidence "
        "(<span class='ok'>correct</span>, <span class='wrong'>wrong</span>).</p><div class='gallery'>"
    ]
    colorized = ((info.headline_checkpoint, headline), f"colorized, {headline}")
    for key in list(evaluation.thumbnails)[: info.gallery_images]:
        cells = [((NO_CHECKPOINT, ORIGINAL), "original"), ((NO_CHECKPOINT, GRAYSCALE), "gray input"), colorized]
        links = full_size_links(key, frame.loc[frame["image"] == key, "path"].iloc[0], info, path.parent)
        parts.append(_gallery_item(key, frame, evaluation.thumbnails[key], cells, links))
    parts.append("</div>")
    images = len(evaluation.grayscale_thumbnails)
    parts += [
        f"<h2>Real grayscale photos</h2><p>{images} test photos have no colour at all: no truth to compare with, "
        "so the classifier alone judges the gray photo against its colorizations.</p>"
    ]
    table = _format_table(one_table(evaluation.grayscale_rows, info, grayscale_table))
    parts += [table.to_html(classes="summary", border=0, index_names=False), "<div class='gallery'>"]
    gray_frame = pd.DataFrame(evaluation.grayscale_rows)
    for key, thumbnails in evaluation.grayscale_thumbnails.items():
        cells = [((NO_CHECKPOINT, GRAYSCALE), "gray photo"), colorized]
        links = full_size_links(key, gray_frame.loc[gray_frame["image"] == key, "path"].iloc[0], info, path.parent)
        parts.append(_gallery_item(key, gray_frame, thumbnails, cells, links))
    parts += ["</div>", LIGHTBOX_SCRIPT, "</body></html>"]
    atomic_write_text(path, "\n".join(parts) + "\n")


def write_report(evaluation: Evaluation, info: ReportInfo, out_dir: Path) -> dict:
    """Write every output of an evaluation into ``out_dir``; returns the headline metrics."""
    if not evaluation.rows:
        raise ValueError("evaluate: no image could be evaluated")
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(evaluation.rows)
    with atomic_output(out_dir / "classification.csv", "w") as f:
        frame.to_csv(f, index=False, float_format="%.6g")
    gray_columns = list(frame.columns[: frame.columns.get_loc("top5_correct") + 1])
    with atomic_output(out_dir / "real_grayscale.csv", "w") as f:
        pd.DataFrame(evaluation.grayscale_rows, columns=gray_columns).to_csv(f, index=False, float_format="%.6g")
    metrics = headline_metrics(evaluation.rows, info)
    metrics["real_grayscale"] = grayscale_metrics(evaluation.grayscale_rows, info)
    atomic_write_json(out_dir / "metrics.json", metrics)
    figures = {
        "Temperature sweep (the study's Figure 4)": out_dir / "figures" / "temperature_sweep.png",
        "Accuracy, AuC and colourfulness against T": out_dir / "figures" / "metrics_vs_T.png",
    }
    (out_dir / "figures").mkdir(exist_ok=True)
    plot_temperature_sweep(evaluation, info, figures["Temperature sweep (the study's Figure 4)"])
    plot_metrics_vs_temperature(evaluation.rows, info, figures["Accuracy, AuC and colourfulness against T"])
    write_markdown(evaluation, info, out_dir / "classification.md")
    write_grayscale_markdown(evaluation, info, out_dir / "real_grayscale.md")
    write_html(evaluation, info, figures, out_dir / "index.html")
    return metrics
