"""The sample stage: ILSVRC layouts, folders, the demo, determinism, disjoint splits."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize_core.config import SampleParams, SplitParams
from colorize_core.data.sample import build_demo, list_folder, list_imagenet, pick_splits, read_list, run_sample

SYNSETS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def make_ilsvrc(root: Path, per_class: int = 6, flat_val: int = 5) -> None:
    """A small ILSVRC CLS-LOC root: train/<synset>/*.JPEG, a flat val/ with its solution file."""
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{s} name {i}\n" for i, s in enumerate(SYNSETS)))
    pixel = Image.new("RGB", (8, 8), (200, 30, 30))
    for synset in SYNSETS:
        (root / "train" / synset).mkdir(parents=True)
        for k in range(per_class):
            pixel.save(root / "train" / synset / f"{synset}_{k}.JPEG")
    (root / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    for k in range(flat_val):
        name = f"ILSVRC2012_val_{k:08d}"
        pixel.save(root / "val" / f"{name}.JPEG")
        synset = SYNSETS[(k * 3) % len(SYNSETS)]
        rows.append(f"{name},{synset} 1 2 3 4 {synset} 5 6 7 8")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (root / "train" / SYNSETS[0] / "readme.txt").write_text("not an image")


def test_imagenet_nested_and_flat_layouts(tmp_path):
    make_ilsvrc(tmp_path)
    train = list_imagenet(tmp_path, "train")
    assert len(train) == 24
    assert {(Path(r.path).parent.name, r.synset) for r in train} == {(s, s) for s in SYNSETS}
    assert all(r.class_index == SYNSETS.index(r.synset) for r in train)
    val = list_imagenet(tmp_path, "val")
    assert [r.synset for r in val] == [SYNSETS[(k * 3) % 4] for k in range(5)]
    assert [r.class_index for r in val] == [(k * 3) % 4 for k in range(5)]


def imagenet_params(root: Path, seed: int = 0, sizes=(10, 6, 5)) -> SampleParams:
    return SampleParams(
        source="imagenet",
        seed=seed,
        train=SplitParams(str(root), "train", sizes[0]),
        val=SplitParams(str(root), "train", sizes[1]),
        test=SplitParams(str(root), "val", sizes[2]),
    )


def test_splits_are_deterministic_and_disjoint(tmp_path):
    make_ilsvrc(tmp_path)
    first = pick_splits(imagenet_params(tmp_path))
    again = pick_splits(imagenet_params(tmp_path))
    other = pick_splits(imagenet_params(tmp_path, seed=1))
    assert first == again
    assert first["train"] != other["train"]
    assert {len(first[s]) for s in ("train", "val")} == {10, 6}
    train_paths = {r.path for r in first["train"]}
    assert not train_paths & {r.path for r in first["val"]}  # same folder, disjoint
    assert all("/val/" in r.path for r in first["test"])  # its own root and sub-folder


def test_too_many_asked_names_the_parameter(tmp_path):
    make_ilsvrc(tmp_path)
    with pytest.raises(ValueError, match=r"sample\.val\.size asks for 20 images but only 14 remain"):
        pick_splits(imagenet_params(tmp_path, sizes=(10, 20, 5)))


def test_folder_source_takes_class_from_parent(tmp_path):
    (tmp_path / "photos" / "dogs").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "photos" / "dogs" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "photos" / "b.jpg")
    records = list_folder(tmp_path, "photos")
    assert [(Path(r.path).name, r.synset, r.class_index) for r in records] == [("b.jpg", "", -1), ("a.png", "dogs", -1)]
    (tmp_path / "photos" / "n02124075").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "photos" / "n02124075" / "c.png")
    assert list_folder(tmp_path, "photos")[-1].class_index == 285  # ImageNet order without a mapping file


@pytest.mark.slow
def test_demo_is_deterministic_and_uses_bundled_photos(tmp_path):
    sizes = {"train": 12, "val": 4, "test": None}
    records = build_demo(tmp_path / "a", sizes, seed=0)
    again = build_demo(tmp_path / "b", sizes, seed=0)
    assert len(records["train"]) == 12 and len(records["val"]) == 4 and len(records["test"]) == 9
    for mine, theirs in zip(records["train"], again["train"]):
        assert np.array_equal(np.asarray(Image.open(mine.path)), np.asarray(Image.open(theirs.path)))
    labelled = {Path(r.path).stem: r.class_index for r in records["test"] if r.class_index >= 0}
    assert labelled == {"chelsea": 285, "coffee": 967, "grace_hopper": 652, "rocket": 657}


def test_run_sample_writes_lists(tmp_path):
    (tmp_path / "data").mkdir()
    make_ilsvrc(tmp_path / "data")
    sizes = run_sample(imagenet_params(tmp_path / "data"), tmp_path / "out")
    assert sizes == {"train": 10, "val": 6, "test": 5}
    assert read_list(tmp_path / "out" / "train.csv") == pick_splits(imagenet_params(tmp_path / "data"))["train"]


def test_several_roots_pool_into_disjoint_splits(tmp_path):
    """A split may pool several folders (a YAML list under root); splits drawing from the same
    pool are disjoint slices of it, and every image of the pool is used once at most."""
    from colorize_core.config import from_dict

    for name, count in (("a", 7), ("b", 5)):
        (tmp_path / name / "train" / "cls").mkdir(parents=True)
        for k in range(count):
            Image.new("RGB", (4, 4)).save(tmp_path / name / "train" / "cls" / f"{name}{k}.png")
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    params = from_dict(
        SampleParams,
        {
            "source": "folder",
            "train": {"root": roots, "subdir": "train", "size": 9},
            "val": {"root": roots, "subdir": "train", "size": 3},
            "test": {"root": roots[0], "subdir": "train", "size": 2},
        },
    )
    params.validate("sample")
    splits = pick_splits(params)
    train, val = ({Path(r.path).name for r in splits[s]} for s in ("train", "val"))
    assert len(train) == 9 and len(val) == 3 and not train & val
    assert train | val == {f"a{k}.png" for k in range(7)} | {f"b{k}.png" for k in range(5)}
    assert splits == pick_splits(params)
    with pytest.raises(ValueError, match=r"sample\.val\.size asks for 4 images but only 3 remain in .*a/train \+ .*b/train"):
        params.val.size = 4
        pick_splits(params)
    params.train.root = roots + [str(tmp_path / "missing")]
    with pytest.raises(ValueError, match=r"sample\.train\.root must be an existing folder, got '.*missing'"):
        params.validate("sample")
