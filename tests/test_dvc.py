"""dvc.yaml tells the truth: each stage depends on exactly the code it runs."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

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
