"""Experiments are DVC-native overrides of one configuration (Hydra composition), not copies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import copy_of_the_repository

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(path.stem for path in (ROOT / "conf" / "experiment").glob("*.yaml"))


def composed(tmp_path: Path, *overrides: str) -> str:
    """params.yaml as `dvc exp run -S ...` writes it (DVC's own Hydra composition)."""
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / f"params-{len(list(tmp_path.iterdir()))}.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", "", list(overrides))
    return out.read_text()


def test_hydra_composition_is_on_and_no_copies_are_left():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "[hydra]" in config and "enabled = true" in config
    assert not (ROOT / "configs").exists()
    assert {"tiny-imagenet", "pretrained-cpu", "pretrained-gpu"} <= set(EXPERIMENTS)


def test_params_yaml_is_the_default_composition(tmp_path):
    """`dvc exp run` with no override rewrites params.yaml: it must come out unchanged."""
    assert composed(tmp_path) == (ROOT / "params.yaml").read_text()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_validates_and_holds_every_tracked_parameter(experiment, tmp_path, monkeypatch):
    """Every section is checked; the sample folders only where they exist on this machine."""
    from colorize_core.config import SPLITS, ConfigError, SampleParams, load_params

    path = tmp_path / "params.yaml"
    path.write_text(composed(tmp_path, f"experiment={experiment}"))
    monkeypatch.chdir(ROOT)  # roots are relative to the project root
    params = load_params(path, validate=False)
    roots = {root for split in SPLITS for root in params.sample.split(split).roots}
    if not all(Path(root).is_dir() for root in roots):
        params.sample = SampleParams()  # data on another machine: check everything else
    try:
        params.validate()
    except ConfigError as error:
        raise AssertionError(f"{experiment}: {error}") from None

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    config = yaml.safe_load(path.read_text())
    for key in {key for stage in stages.values() for key in stage.get("params", [])}:
        node = config
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{experiment} lacks {key}"
            node = node[part]


def test_an_override_switches_to_tiny_imagenet_and_its_plain_baseline(tmp_path):
    default = yaml.safe_load(composed(tmp_path))
    tiny = yaml.safe_load(composed(tmp_path, "experiment=tiny-imagenet"))
    plain = yaml.safe_load(composed(tmp_path, "experiment=tiny-imagenet", "train.rebalance=false"))
    assert default["sample"]["source"] == "demo"
    assert tiny["sample"]["train"] == {"root": "../shared/data/tiny-imagenet", "subdir": "train", "size": 16000}
    assert tiny["train"]["width"] == 0.125 and tiny["train"]["epochs"] == 48 and tiny["train"]["rebalance"] is True
    assert plain == {**tiny, "train": {**tiny["train"], "rebalance": False}}
    pooled = yaml.safe_load(composed(tmp_path, "experiment=pretrained-cpu"))["sample"]
    assert pooled["val"]["root"] == pooled["train"]["root"] and len(pooled["train"]["root"]) == 5  # interpolated


def test_dvc_exp_run_queues_a_sweep_over_an_experiment(tmp_path):
    """`dvc exp run --queue -S experiment=tiny-imagenet -S 'T=0.09,0.2'` queues two runs whose
    params.yaml hold the composed experiment at each T."""
    repo = copy_of_the_repository(tmp_path / "repo")

    def run(*argv):
        return subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=True).stdout

    run("dvc", "exp", "run", "--queue", "-S", "experiment=tiny-imagenet", "-S", "T=0.09,0.2")
    stashed = run("git", "log", "-g", "--format=%H", "refs/exps/celery/stash").split()
    queued = [yaml.safe_load(run("git", "show", f"{rev}:params.yaml")) for rev in stashed]
    assert sorted(p["T"] for p in queued) == [0.09, 0.2]
    assert all(p["sample"]["train"]["root"] == "../shared/data/tiny-imagenet" for p in queued)
