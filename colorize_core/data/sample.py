"""Stage 1, ``sample``: deterministic train / val / test lists of (path, synset, class index).

Sources:

- ``imagenet``: an ILSVRC CLS-LOC root. ``<root>/<subdir>/<synset>/*`` or, for the official flat
  validation folder, ``<root>/<subdir>/*`` labelled by ``<root>/LOC_val_solution.csv``.
  ``<root>/LOC_synset_mapping.txt`` gives the 1000-class index order.
- ``folder``: any folder of images, searched recursively; the class is the parent folder's name
  when the image sits in a sub-folder (its index comes from a ``LOC_synset_mapping.txt`` in the
  root when there is one, else -1).
- ``demo``: random crops of the colour photographs that scikit-image ships, written under the
  output folder, so the pipeline runs with no data set and no network.

Splits that draw from the same folder are disjoint: the folder's images are shuffled once with
the seed and the splits take consecutive slices, in the order train, val, test.
"""

from __future__ import annotations

import csv
import importlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from colorize_core import imagenet
from colorize_core.config import SPLITS, ConfigError, SampleParams
from colorize_core.constants import SYNSET_MAPPING_FILE, VAL_SOLUTION_FILE
from colorize_core.imagenet import parse_synset_mapping
from colorize_core.images import is_image_path
from colorize_core.io import atomic_write_csv

log = logging.getLogger(__name__)

LIST_FIELDS = ("path", "synset", "class_index")
UNLABELLED = -1


@dataclass(frozen=True)
class Record:
    """One image of a split."""

    path: str
    synset: str = ""  # ImageNet synset (or folder name); "" when unknown
    class_index: int = UNLABELLED  # line of the synset in LOC_synset_mapping.txt; -1 when unknown


def _class_indices(root: Path) -> dict[str, int]:
    """synset -> class index from ``root/LOC_synset_mapping.txt``, else ImageNet-1k's own order."""
    mapping = root / SYNSET_MAPPING_FILE
    order = parse_synset_mapping(mapping.read_text())[0] if mapping.is_file() else imagenet.synsets()
    return {synset: i for i, synset in enumerate(order)}


def _record(path: Path, synset: str, index_of: dict[str, int]) -> Record:
    return Record(str(path), synset, index_of.get(synset, UNLABELLED))


def list_imagenet(root: Path, subdir: str) -> list[Record]:
    """All images of an ILSVRC split folder, labelled, sorted by path."""
    if not (root / SYNSET_MAPPING_FILE).is_file():
        raise ConfigError(f"sample: source imagenet needs {root / SYNSET_MAPPING_FILE}")
    index_of = _class_indices(root)
    folder = root / subdir
    nested = sorted(p for p in folder.glob("*/*") if p.is_file() and is_image_path(p))
    if nested:
        return [_record(p, p.parent.name, index_of) for p in nested]
    flat = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
    solution = root / VAL_SOLUTION_FILE
    if flat and not solution.is_file():
        raise ConfigError(f"sample: {folder} holds images without <synset>/ folders and {solution} is missing")
    label_of = {}
    if flat:
        with solution.open(newline="") as f:
            for row in csv.DictReader(f):
                label_of[row["ImageId"]] = row["PredictionString"].split()[0]
    return [_record(p, label_of.get(p.stem, ""), index_of) for p in flat]


def list_folder(root: Path, subdir: str) -> list[Record]:
    """All images under ``root/subdir``, recursively, sorted by path."""
    index_of = _class_indices(root)
    folder = root / subdir
    images = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
    return [_record(p, p.parent.name if p.parent != folder else "", index_of) for p in images]


# --- demo -------------------------------------------------------------------------------------

#: Colour photographs shipped inside installed packages: (package, file, ImageNet synset or "").
#: Synsets are given where an ImageNet-1k class fits (the rocket's nearest class is "missile").
DEMO_PHOTOS = (
    ("skimage.data", "astronaut.png", ""),
    ("skimage.data", "chelsea.png", "n02124075"),  # Egyptian cat
    ("skimage.data", "coffee.png", "n07920052"),  # espresso
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "n03763968"),  # military uniform
    ("skimage.data", "hubble_deep_field.jpg", ""),
    ("skimage.data", "ihc.png", ""),
    ("skimage.data", "motorcycle_left.png", ""),
    ("skimage.data", "retina.jpg", ""),
    ("skimage.data", "rocket.jpg", "n03773504"),  # missile
)
#: Side of the saved demo crops; the shard stage resizes them to its own size.
DEMO_CROP_SIZE = 96


def demo_photo_paths() -> list[tuple[Path, str]]:
    """Paths of the demo photographs inside their installed packages, with their synsets."""
    return [
        (Path(importlib.import_module(package).__file__).parent / name, synset) for package, name, synset in DEMO_PHOTOS
    ]


def build_demo(out_dir: Path, sizes: dict[str, int | None], seed: int) -> dict[str, list[Record]]:
    """Write the demo images under ``out_dir/demo/`` and return their records per split.

    train and val: random square crops (side 1/4 to all of the short side, random horizontal
    flip) of the bundled photos, saved at 96×96; test: the photos themselves, whole.
    """
    rng = np.random.default_rng(seed)
    photos = [(path, synset, Image.open(path).convert("RGB")) for path, synset in demo_photo_paths()]
    records: dict[str, list[Record]] = {}
    for split in ("train", "val"):
        count = sizes[split] or 64
        records[split] = []
        for i in range(count):
            path, synset, photo = photos[i % len(photos)]
            short = min(photo.size)
            side = int(rng.integers(short // 4, short + 1))
            x = int(rng.integers(0, photo.width - side + 1))
            y = int(rng.integers(0, photo.height - side + 1))
            crop = photo.crop((x, y, x + side, y + side)).resize((DEMO_CROP_SIZE, DEMO_CROP_SIZE), Image.BICUBIC)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            target = out_dir / "demo" / split / f"{path.stem}_{i:05d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            crop.save(target, optimize=False)
            records[split].append(Record(str(target), synset, imagenet.class_index(synset)))
    count = min(sizes["test"] or len(photos), len(photos))
    records["test"] = []
    for path, synset, photo in photos[:count]:
        target = out_dir / "demo" / "test" / f"{path.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        photo.save(target)
        records["test"].append(Record(str(target), synset, imagenet.class_index(synset)))
    return records


# --- sampling ---------------------------------------------------------------------------------


def pick_splits(params: SampleParams) -> dict[str, list[Record]]:
    """Draw the three splits from their sources; disjoint where they share a folder.

    Raises
    ------
    ConfigError
        when a folder has fewer images than its splits ask for.
    """
    lister = list_imagenet if params.source == "imagenet" else list_folder
    pools: dict[tuple[tuple[Path, ...], str], list[str]] = defaultdict(list)
    for split in SPLITS:
        spec = params.split(split)
        pools[(tuple(map(Path, spec.roots)), spec.subdir)].append(split)

    records: dict[str, list[Record]] = {}
    for (roots, subdir), splits in pools.items():
        candidates = [record for root in roots for record in lister(root, subdir)]
        where = " + ".join(str(root / subdir) for root in roots)
        order = np.random.default_rng(params.seed).permutation(len(candidates))
        start = 0
        for split in splits:
            size = params.split(split).size
            remaining = len(candidates) - start
            if size is None:
                size = remaining
            if size > remaining or size == 0:
                raise ConfigError(
                    f"sample.{split}.size asks for {size} images but only {remaining} remain in "
                    f"{where} (splits drawn from it: {', '.join(splits)})"
                )
            chosen = order[start : start + size]
            start += size
            records[split] = sorted((candidates[i] for i in chosen), key=lambda r: r.path)
    return records


def write_list(records: list[Record], path: Path) -> None:
    """Write one split list as CSV with columns path, synset, class_index (atomically)."""
    atomic_write_csv(path, LIST_FIELDS, ((r.path, r.synset, r.class_index) for r in records))


def read_list(path: Path) -> list[Record]:
    """Read a split list written by :func:`write_list`."""
    with Path(path).open(newline="") as f:
        return [Record(row["path"], row["synset"], int(row["class_index"])) for row in csv.DictReader(f)]


def run_sample(params: SampleParams, out_dir: Path) -> dict[str, int]:
    """Write ``out_dir/{train,val,test}.csv`` (and the demo images); returns the split sizes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if params.source == "demo":
        records = build_demo(out_dir, {s: params.split(s).size for s in SPLITS}, params.seed)
    else:
        records = pick_splits(params)
    for split in SPLITS:
        write_list(records[split], out_dir / f"{split}.csv")
        log.info("sample: %s: %d images", split, len(records[split]))
    return {split: len(records[split]) for split in SPLITS}
