"""Which model the server runs, and what the page says about it (from the model card when bundled)."""

from __future__ import annotations

import re
from pathlib import Path

from colorize_core.inference.colorizer import BUNDLED_CHECKPOINT, Colorizer

MODEL_CARD = BUNDLED_CHECKPOINT.with_name("MODEL_CARD.md")
#: Where `colorize serve` looks for a model you trained when the bundled one is missing.
TRAINED_CHECKPOINT = Path("models") / "best.pt"


def find_checkpoint(given: Path | None, folder: Path) -> Path:
    """The checkpoint to serve: the one given, else the bundled model, else ``folder/models/best.pt``.

    Raises
    ------
    ValueError
        in one line, when none of them exists.
    """
    if given is not None:
        return given
    if BUNDLED_CHECKPOINT.is_file():
        return BUNDLED_CHECKPOINT
    if (folder / TRAINED_CHECKPOINT).is_file():
        return folder / TRAINED_CHECKPOINT
    raise ValueError(
        f"no model to serve: the bundled {BUNDLED_CHECKPOINT} is missing and there is no {TRAINED_CHECKPOINT} "
        f"in {folder}; train one (dvc repro) or give --checkpoint FILE"
    )


def plain(cell: str) -> str:
    """Markdown emphasis and code marks removed: ``**0.712**`` -> ``0.712``."""
    return re.sub(r"\*\*|`", "", cell).strip()


def table_rows(lines: list[str]) -> list[list[str]]:
    """The cells of the first Markdown table among ``lines``, its separator row left out."""
    rows, started = [], False
    for line in lines:
        if line.startswith("|"):
            started = True
            cells = [plain(cell) for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                rows.append(cells)
        elif started:
            break
    return rows


def model_card_summary(text: str) -> dict:
    """The model card's name, facts table (architecture, trained on, ...) and measured quality table.

    Returns
    -------
    {"name": str, "facts": {key: value}, "quality": {"caption": str, "columns": [...], "rows": [[...]]}}
    """
    lines = text.splitlines()
    name = plain(lines[0].removeprefix("# ").removeprefix("Model card: "))
    facts = {row[0]: row[1] for row in table_rows(lines) if len(row) == 2 and row[0]}
    measured = lines[lines.index("## Measured") + 1 :]
    paragraph = " ".join(line.strip() for line in measured[1 : measured.index("", 1)])
    columns, *rows = table_rows(measured)
    return {"name": name, "facts": facts, "quality": {"caption": plain(paragraph), "columns": columns, "rows": rows}}


def describe_model(colorizer: Colorizer, checkpoint: Path) -> dict:
    """What the page's model panel shows: the checkpoint's own facts, and the card of the bundled model."""
    saved = colorizer.checkpoint
    info = {
        "checkpoint": str(checkpoint),
        "arch": saved.config.arch,
        "epoch": saved.epoch,
        "view_size": colorizer.size,
        "default_T": colorizer.default_T,
        "card": None,
    }
    if checkpoint.resolve() == BUNDLED_CHECKPOINT.resolve() and MODEL_CARD.is_file():
        info["card"] = model_card_summary(MODEL_CARD.read_text(encoding="utf-8"))
    return info
