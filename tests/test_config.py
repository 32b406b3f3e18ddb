"""params.yaml validation: a bad value stops with one line that names the parameter."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from colorize_core.cli import main
from colorize_core.config import ConfigError, load_params

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, change) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repository_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.sample.source == "demo"
    assert params.T in params.sweep


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["sample"].update(source="flickr"), r"sample\.source must be one of demo, folder, imagenet"),
        (
            lambda p: p["sample"].update(source="imagenet", train={"root": "/no/such/dir", "subdir": "train"}),
            r"sample\.train\.root must be an existing folder",
        ),
        (lambda p: p["sample"]["train"].update(size=-5), r"sample\.train\.size must be a positive integer"),
        (lambda p: p["shard"].update(size=-64), r"shard\.size must be a multiple of 8"),
        (lambda p: p["shard"].update(grid=1000), r"shard\.grid must be an integer cell size"),
        (lambda p: p["shard"].update(grid="big"), r"shard\.grid must be an integer"),
        (lambda p: p["histogram"].update(**{"lambda": 2}), r"histogram\.lambda must be in \[0, 1\]"),
        (lambda p: p["shard"].update(colour="yes"), r"unknown parameter shard\.colour"),
        (lambda p: p.update(T=-1), r"T must be a temperature \(0 = the mode, 1 = the mean\) in \[0, 100\]"),
    ],
)
def test_bad_parameter_is_named(tmp_path, change, message):
    path = write_params(tmp_path, change)
    with pytest.raises(ConfigError, match=message):
        load_params(path)


def test_cli_reports_bad_parameter_in_one_line_before_work(tmp_path):
    path = write_params(tmp_path, lambda p: p["shard"].update(size=-64))
    result = CliRunner().invoke(main, ["shard", "--params", str(path), "--out", str(tmp_path / "shards")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "shard.size must be a multiple of 8" in result.output
    assert not (tmp_path / "shards").exists()
