"""The package's floors: a module imports only from its own floor or the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from colorize_core.registry import ARCHITECTURES, CLASSIFIERS

PACKAGE = Path(__file__).resolve().parents[1] / "colorize_core"

#: Lowest floor first. A module not listed here fails the test: place it when you add it.
FLOORS = [
    ("base", ["constants", "io", "progress", "device", "registry", "figures"]),
    ("pixels", ["color", "color_tensor", "images", "imagenet"]),
    ("ab plane", ["ab_grid", "quantize", "quantize_kernel", "bins"]),
    ("configuration", ["config"]),
    ("networks", ["efficientnet_lite", "pretrained", "model", "checkpoint"]),
    ("data stages", ["data"]),
    ("training", ["train"]),
    ("inference", ["inference"]),
    ("evaluation", ["evaluate"]),
    ("web page", ["serve"]),
    ("command line", ["cli"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    """Index in FLOORS of ``colorize_core.x.y`` (by its longest listed prefix)."""
    parts = module.split(".")[1:]
    for index, (_, members) in enumerate(FLOORS):
        if parts and parts[0] in members:
            return index
    raise KeyError(module)


def imports_of(path: Path) -> set[str]:
    """Every colorize_core module that ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # from pkg import module
    return {name for name in found if name.startswith("colorize_core.")}


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if module_name(path) not in ("colorize_core", "colorize_core.resources")
    }


def is_module(name: str) -> bool:
    return name in modules() or (PACKAGE.parent / name.replace(".", "/")).is_dir()


def test_every_module_has_a_floor():
    unplaced = []
    for name in modules():
        try:
            floor_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"add these to FLOORS: {unplaced}"


def test_no_module_imports_from_a_higher_floor():
    upward = []
    for name, path in modules().items():
        for imported in imports_of(path):
            if not is_module(imported):
                continue  # `from colorize_core.x import function`: the module was counted already
            if floor_of(imported) > floor_of(name):
                upward.append(f"{name} ({FLOORS[floor_of(name)][0]}) imports {imported} ({FLOORS[floor_of(imported)][0]})")
    assert not upward, "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check above can fail: a config module that imports a network is caught."""
    bad = tmp_path / "config.py"
    bad.write_text("def f():\n    from colorize_core.model import build_model\n")
    assert "colorize_core.model" in imports_of(bad)
    assert floor_of("colorize_core.model") > floor_of("colorize_core.config")


@pytest.mark.parametrize("registry", [ARCHITECTURES, CLASSIFIERS], ids=lambda r: r.kind)
def test_every_registered_name_loads_a_builder(registry):
    for name in registry:
        assert callable(registry.load(name)), name
    with pytest.raises(ValueError, match=f"unknown {registry.kind} 'nope'"):
        registry.load("nope")
