"""Evaluation: metrics against hand computations, the classifiers, the report and its page."""

import json
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import skimage_photo, tiny_checkpoint
from PIL import Image

from colorize_core.cli import main
from colorize_core.evaluate import classifiers
from colorize_core.evaluate.classifiers import ClassifierUnavailable, load_classifier
from colorize_core.evaluate.metrics import auc, colourfulness, psnr

ROOT = Path(__file__).resolve().parents[1]


def test_auc_of_the_ground_truth_is_one():
    ab = np.random.default_rng(0).uniform(-80, 80, (20, 30, 2))
    assert auc(ab, ab) == pytest.approx(1.0)
    assert auc(ab, ab, weights=np.random.default_rng(1).random((20, 30))) == pytest.approx(1.0)


def test_auc_of_constant_gray_matches_hand_computation():
    # Distances to gray: 0, 10.5, 75 and 200 (outside every threshold).
    truth = np.array([[0.0, 0.0], [10.5, 0.0], [45.0, 60.0], [0.0, 200.0]])
    gray = np.zeros_like(truth)
    # F(t) on t = 0..150; the trapezoid rule over unit steps gives, per pixel,
    # d=0: 150; d=10.5: F steps from 0 at t=10 to 1 at t=11 -> 0.5 + 139 = 139.5;
    # d=75: F is 1 from t=75 on -> 0.5 (t=74..75) + 75 = 75.5; d=200: 0.
    expected = (150 + 139.5 + 75.5 + 0) / 4 / 150
    assert auc(gray, truth) == pytest.approx(expected)
    # Rebalanced with weights 1, 1, 2, 0 (sum 4): (150 + 139.5 + 2·75.5) / 4 / 150.
    assert auc(gray, truth, np.array([1, 1, 2, 0])) == pytest.approx((150 + 139.5 + 151) / 4 / 150)


def test_psnr_and_colourfulness_by_hand():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 16  # MSE = 256 / 48
    assert psnr(b, a) == pytest.approx(10 * np.log10(255**2 / (256 / 48)))
    assert psnr(a, a) == float("inf")
    assert colourfulness(np.full((5, 5, 3), 128, np.uint8)) == 0.0
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200  # rg = 200, yb = 100, no spread: M = 0.3 · hypot(200, 100)
    assert colourfulness(red) == pytest.approx(0.3 * np.hypot(200, 100))


@pytest.mark.parametrize("name, expected", [("chelsea", 285), ("coffee", 967)])  # Egyptian cat, espresso
def test_efficientnet_lite0_mapping_classifies_real_photos(name, expected):
    classifier = load_classifier("efficientnet_lite0", torch.device("cpu"))
    probs = classifier.probabilities([skimage_photo(name)])[0]
    assert probs.argmax() == expected
    assert probs[expected] > 0.5


def test_vgg16_without_weights_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def unreachable():
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(classifiers, "_download_vgg16", unreachable)
    with pytest.raises(ClassifierUnavailable) as error:
        load_classifier("vgg16", torch.device("cpu"))
    message = str(error.value)
    assert "vgg16-397923af.pth" in message and "evaluate.vgg16_weights" in message
    assert "\n" not in message
    with pytest.raises(ClassifierUnavailable, match="does not exist"):
        load_classifier("vgg16", torch.device("cpu"), vgg16_weights=str(tmp_path / "missing.pth"))


@pytest.mark.slow
def test_vgg16_loads_weights_from_a_file(tmp_path):
    from torchvision.models import vgg16

    torch.manual_seed(0)
    torch.save(vgg16().state_dict(), tmp_path / "vgg16.pth")
    classifier = load_classifier("vgg16", torch.device("cpu"), vgg16_weights=str(tmp_path / "vgg16.pth"))
    assert classifier.probabilities([skimage_photo("coffee")]).shape == (1, 1000)


def test_changing_temperature_reruns_only_decode_and_evaluate():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    uses_t = {name for name, stage in stages.items() if {"T", "temperatures"} & set(stage.get("params", []))}
    assert uses_t == {"decode", "evaluate"}
    # ... and neither feeds anything upstream.
    upstream_outs = {str(o if isinstance(o, str) else next(iter(o))) for n in ("sample", "shard", "histogram", "train") for o in stages[n]["outs"]}
    assert not upstream_outs & {"data/decoded", "reports/metrics.json"}


@pytest.fixture(scope="module")
def adhoc_report(tmp_path_factory):
    """`colorize evaluate` on a folder of <synset>/<image> with an untrained checkpoint."""
    root = tmp_path_factory.mktemp("adhoc")
    images = root / "images"
    for synset, name in (("n02124075", "chelsea"), ("n07920052", "coffee"), ("n03763968", "astronaut")):
        (images / synset).mkdir(parents=True)
        Image.fromarray(skimage_photo(name)).save(images / synset / f"{name}.png")
    (images / "n03763968" / "gray.png").write_bytes(b"")  # unreadable: skipped, not fatal
    Image.fromarray(skimage_photo("chelsea")).convert("L").save(images / "n02124075" / "chelsea_gray.png")
    checkpoint = tiny_checkpoint(root / "tiny.pt")
    result = CliRunner().invoke(
        main,
        ["evaluate", "--checkpoint", str(checkpoint), "--images", str(images), "--out", str(root / "report"), "--temperatures", "0,0.38"],
    )
    assert result.exit_code == 0, result.output
    return root / "report"


def test_adhoc_evaluation_writes_tables_metrics_and_page(adhoc_report):
    rows = pd.read_csv(adhoc_report / "classification.csv")
    assert len(rows) == 3 * (1 + 2 + 1)  # ORIGINAL, t=0, t=0.38, BW IMG
    original = rows[rows["variant"] == "ORIGINAL"].set_index("top1_class")
    assert {285, 967} <= set(original.index)
    assert (rows.loc[rows["variant"] == "ORIGINAL", "auc"] == 1.0).all()
    metrics = json.loads((adhoc_report / "metrics.json").read_text())
    assert metrics["T"] == 0.38 and metrics["images"] == 3 and metrics["original"]["top1"] >= 2 / 3
    markdown = (adhoc_report / "classification.md").read_text()
    assert "efficientnet_lite0" in markdown and "tiny.pt" in markdown and "images: **3**" in markdown
    for figure in ("temperature_sweep.png", "metrics_vs_T.png"):
        assert Image.open(adhoc_report / "figures" / figure).size[0] > 400


def test_real_grayscale_photos_are_scored_apart(adhoc_report):
    """A photo without colour has no truth for AuC: it is classified gray and colorized, in its own table."""
    assert "chelsea_gray.png" not in set(pd.read_csv(adhoc_report / "classification.csv")["path"].map(lambda p: Path(p).name))
    gray = pd.read_csv(adhoc_report / "real_grayscale.csv")
    assert sorted(gray["variant"]) == ["BW IMG", "t=0", "t=0.38"]
    assert set(gray["path"].map(lambda p: Path(p).name)) == {"chelsea_gray.png"} and (gray["true_class"] == 285).all()
    metrics = json.loads((adhoc_report / "metrics.json").read_text())["real_grayscale"]
    bw = gray.loc[gray["variant"] == "BW IMG", "top1_correct"].item()
    assert metrics == {"images": 1, "gray_top1": float(bw), "colorized_top1": metrics["colorized_top1"]}
    assert metrics["colorized_top1"] == float(gray.loc[gray["variant"] == "t=0.38", "top1_correct"].item())
    table = (adhoc_report / "real_grayscale.md").read_text()
    assert "| BW IMG" in table and "| t=0.38" in table
    assert "Real grayscale photos" in (adhoc_report / "index.html").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def render(page_path: Path, screenshot: Path) -> dict:
    """Open a page in headless Chromium; report which images loaded, and take a screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(page_path.resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(
            "Array.from(document.images).filter(i => !i.closest('#lightbox')).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,"
            " box: (r => [r.x + scrollX, r.y + scrollY, r.width, r.height])(i.getBoundingClientRect())}))"
        )
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"images": images}


def drawn_images(result: dict, screenshot: Path) -> list[bool]:
    """Whether each image's box on the screenshot holds a picture rather than an empty frame."""
    shot = np.asarray(Image.open(screenshot).convert("RGB")).astype(float)
    drawn = []
    for image in result["images"]:
        x, y, w, h = (int(round(v)) for v in image["box"])
        region = shot[y : y + h, x : x + w]
        drawn.append(image["ok"] and w > 20 and h > 20 and region.std() > 10)
    return drawn


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_page_opens_in_headless_chromium_and_shows_every_image(adhoc_report, tmp_path):
    result = render(adhoc_report / "index.html", tmp_path / "page.png")
    assert len(result["images"]) == 2 + 3 * 3 + 2  # two figures, three per gallery item, two per gray photo
    assert all(drawn_images(result, tmp_path / "page.png"))

    # The same check fails when an image is missing.
    broken = tmp_path / "broken.html"
    html = (adhoc_report / "index.html").read_text()
    first = html.index("src='data:image/jpeg;base64,")
    broken.write_text(html[:first] + "src='missing.jpg" + html[html.index("'", first + 5) :])
    result = render(broken, tmp_path / "broken.png")
    assert drawn_images(result, tmp_path / "broken.png").count(False) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_a_thumbnail_opens_its_full_size_file(adhoc_report):
    """Clicking the original's thumbnail shows the source photo at its own resolution; the gray
    input's shows it through a grayscale filter."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((adhoc_report / "index.html").resolve().as_uri())
        shown = []
        for alt in ("original", "gray input"):
            page.locator(f"a.full img[alt^='{alt} ']").first.click()
            page.wait_for_function("document.querySelector('#lightbox img').complete")
            shown.append(page.evaluate(
                "(i => [getComputedStyle(i.parentNode).display, i.naturalWidth, i.naturalHeight, i.style.filter])"
                "(document.querySelector('#lightbox img'))"
            ))
            page.locator("#lightbox").click()
        browser.close()
    width, height = Image.open(sorted((adhoc_report.parent / "images").glob("*/*.png"))[0]).size  # astronaut
    assert shown == [["flex", width, height, ""], ["flex", width, height, "grayscale(1)"]]


def test_the_page_has_one_summary_a_banner_and_says_when_too_few_images(adhoc_report):
    page = (adhoc_report / "index.html").read_text()
    assert page.count("<table") == 2  # the summary and the real-grayscale table
    assert "Model: eccv16 width 0.125, checkpoint tiny" in page and "(ad hoc)" in page
    assert "only 3 test images" in page and "Toy demo" not in page
    markdown = (adhoc_report / "classification.md").read_text()
    summary = markdown[markdown.index("## Summary") : markdown.index("## Per image")]
    assert summary.count("| ORIGINAL") == 1 and "### Checkpoint" not in markdown
    sweep = Image.open(adhoc_report / "figures" / "temperature_sweep.png")
    assert abs(sweep.size[0] / sweep.size[1] - 4 / 3) < 0.2  # gray, t=0, t=0.38, original over 3 even rows


def test_one_summary_table_labels_each_checkpoint_when_there_are_several():
    from colorize_core.evaluate.report import ReportInfo, one_table

    def row(image, checkpoint, variant, top1):
        return dict(image=image, checkpoint=checkpoint, variant=variant, true_class=1, top1_correct=top1,
                    top5_correct=1, true_confidence=0.5, psnr=20.0, auc=0.9, auc_rebalanced=0.8,
                    colourfulness=30.0, colourfulness_diff=1.0)

    rows = [row(i, c, v, t) for i in range(2) for c, v, t in
            [("-", "ORIGINAL", 1), ("-", "BW IMG", 0), ("best", "t=0.38", i), ("last", "t=0.38", 1)]]
    info = ReportInfo("c", {"best": "", "last": ""}, [0.38], 0.38, "best")
    table = one_table(rows, info)
    assert list(table.index) == ["ORIGINAL", "best t=0.38", "last t=0.38", "BW IMG"]
    assert list(table["top1"]) == [1.0, 0.5, 1.0, 0.0]
    single = one_table(rows, ReportInfo("c", {"best": ""}, [0.38], 0.38, "best"))
    assert list(single.index) == ["ORIGINAL", "t=0.38", "BW IMG"]


def test_metrics_put_the_headline_first(adhoc_report):
    """`dvc exp show` lists metrics in file order: the colorized headline figures come first,
    then the gray input's; no other file is a DVC metric."""
    metrics = json.loads((adhoc_report / "metrics.json").read_text())
    first = next(iter(metrics))
    assert list(metrics[first])[:4] == ["top1", "auc", "auc_rebalanced", "colourfulness_diff"]
    assert list(metrics)[1] == "grayscale"
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = [next(iter(m)) if isinstance(m, dict) else m for s in stages.values() for m in s.get("metrics", [])]
    assert declared == ["reports/metrics.json"]


@pytest.mark.parametrize(
    "arguments, refusal",
    [
        (["--classifier", "efficientnet_lite0"], "efficientnet_lite0 is the evaluation classifier"),
        (["--data", "{tmp}/imagenet-val", "--subdir", "val"], "photos under imagenet-val/ are the test set"),
    ],
)
def test_validation_choice_refuses_the_judge_and_the_test_set(tmp_path, arguments, refusal):
    """scripts/validation_choice.py: choosing a model never uses the evaluation classifier or the test photos."""
    import subprocess
    import sys

    (tmp_path / "imagenet-val" / "val" / "n01440764").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "imagenet-val" / "val" / "n01440764" / "a.png")
    script = Path(__file__).resolve().parents[1] / "scripts" / "validation_choice.py"
    command = [sys.executable, str(script), "--checkpoint", "any.pt", *(a.format(tmp=tmp_path) for a in arguments)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and f"refused: {refusal}" in result.stderr
