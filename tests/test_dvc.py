"""dvc.yaml tells the truth: each stage depends on exactly the code it runs."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import copy_of_the_repository
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

#: The module each stage's command runs (cli.py imports it inside the command).
STAGE_MODULES = {
    "sample": "colorize_core.data.sample",
    "shard": "colorize_core.data.shard",
    "histogram": "colorize_core.data.histogram",
    "train": "colorize_core.train.trainer",
    "decode": "colorize_core.inference.decode_stage",
    "evaluate": "colorize_core.evaluate.run",
}
#: Data files of the package that code reads (through importlib.resources).
RESOURCES = {"colorize_core.imagenet": ["colorize_core/resources/LOC_synset_mapping.txt"]}


def module_path(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """colorize_core modules that a file imports (``from pkg import module`` counts the module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if module_path(f"{node.module}.{alias.name}")}
    return {name for name in found if name.startswith("colorize_core") and module_path(name)}


def code_closure(stage: str) -> set[str]:
    """Files a stage runs: its script, cli.py and its top-level imports, and everything the stage's
    module imports, transitively (imports inside functions too)."""
    seen: set[str] = set()
    todo = [STAGE_MODULES[stage], *imported_modules(ROOT / "colorize_core" / "cli.py", top_level_only=True)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += imported_modules(module_path(module))
    files = {f"stages/{stage}.py", "colorize_core/cli.py"}
    for module in seen:
        path = module_path(module).relative_to(ROOT).as_posix()
        if not path.endswith("__init__.py"):
            files.add(path)
        files |= set(RESOURCES.get(module, []))
    return files


def code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.startswith(("stages/", "colorize_core/"))}


def test_every_stage_depends_on_exactly_the_code_it_runs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGE_MODULES)
    for name, stage in stages.items():
        expected, listed = code_closure(name), code_deps(stage)
        assert listed == expected, f"{name}: missing {sorted(expected - listed)}, extra {sorted(listed - expected)}"


def test_the_closure_follows_imports_inside_functions():
    """The check can fail: the decode stage reaches color.py only through other modules."""
    closure = code_closure("decode")
    assert {"colorize_core/color.py", "colorize_core/checkpoint.py", "colorize_core/model.py"} <= closure
    assert "colorize_core/train/trainer.py" not in closure


def test_an_edit_of_the_colour_conversion_reruns_exactly_shard_decode_and_evaluate():
    """Histogram and train only need cell indices (ab_grid.py), so a change to color.py leaves the
    trained model, the slowest output, current."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    rerun = {name for name, stage in stages.items() if "colorize_core/color.py" in stage["deps"]}
    assert rerun == {"shard", "decode", "evaluate"}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def drawn_charts(page_path: Path, screenshot: Path) -> list[float]:
    """Open a page in headless Chromium with every network request refused; for each chart
    vega-embed drew (a canvas or svg inside a plot's div), the pixel spread of its region."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        page = context.new_page()
        page.goto(page_path.resolve().as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(500)  # vega-embed draws asynchronously
        boxes = page.evaluate(
            "Array.from(document.querySelectorAll('div[id] canvas, div[id] svg.marks'))"
            ".map(e => (r => [r.x + scrollX, r.y + scrollY, r.width, r.height])(e.getBoundingClientRect()))"
        )
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    shot = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    return [shot[int(y) : int(y + h), int(x) : int(x + w)].std() for x, y, w, h in boxes]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_dvc_plots_show_draws_the_loss_curves_with_the_network_off(tmp_path):
    """`dvc plots show` writes a page whose charting libraries are inlined (.dvc/plots/offline.html);
    DVC's own page, which loads them from a CDN, draws nothing offline (the check can fail)."""
    repo = copy_of_the_repository(tmp_path / "repo")
    (repo / "reports").mkdir(exist_ok=True)
    (repo / "reports" / "train_log.csv").write_text(
        "epoch,train_loss,val_loss\n" + "".join(f"{e},{3.2 - 0.1 * e:.3f},{3.3 - 0.08 * e:.3f}\n" for e in range(1, 9))
    )
    subprocess.run(["dvc", "plots", "show", "-o", "offline"], cwd=repo, capture_output=True, check=True)
    charts = drawn_charts(repo / "offline" / "index.html", tmp_path / "offline.png")
    assert len(charts) == 1 and charts[0] > 5, charts

    subprocess.run(["dvc", "config", "--unset", "plots.html_template"], cwd=repo, check=True, capture_output=True)
    subprocess.run(["dvc", "plots", "show", "-o", "cdn"], cwd=repo, capture_output=True, check=True)
    assert drawn_charts(repo / "cdn" / "index.html", tmp_path / "cdn.png") == []


def test_dvc_exp_show_puts_the_headline_metrics_first(tmp_path):
    """On the committed demo results: after Experiment and Created, the table's next columns are
    the four headline figures (shard counts are a report, not metrics)."""
    repo = copy_of_the_repository(tmp_path / "repo")
    header = subprocess.run(
        ["dvc", "exp", "show", "--csv"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()[0].split(",")
    shown = [column for column in header if column not in ("rev", "typ", "parent")]  # --csv only
    assert shown[:6] == ["Experiment", "Created", "best.top1", "best.auc", "best.auc_rebalanced", "best.colourfulness_diff"]
    assert not any(column.startswith(("written", "excluded", "skipped")) for column in shown)
