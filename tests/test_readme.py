"""The README's two set-up commands stay true: CI runs exactly the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    setup = ROOT.joinpath("README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    demo, tests = readme_commands()
    assert demo.endswith("dvc repro")
    assert tests.endswith("python -m pytest")
    ci = ROOT.joinpath(".ci/run").read_text().strip().splitlines()
    assert ci[-1] == tests


def test_every_config_file_validates(monkeypatch):
    """Every section of every config is checked; the sample folders only where they exist here."""
    from colorize_core.config import SPLITS, ConfigError, SampleParams, load_params

    monkeypatch.chdir(ROOT)  # roots in configs/ are relative to the project root
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        params = load_params(path, validate=False)
        roots = {root for split in SPLITS for root in params.sample.split(split).roots}
        if not all(Path(root).is_dir() for root in roots):
            params.sample = SampleParams()  # data on another machine: check everything else
        try:
            params.validate()
        except ConfigError as error:
            raise AssertionError(f"{path.name}: {error}") from None


def test_every_config_holds_every_parameter_the_pipeline_tracks():
    """`cp configs/X.yaml params.yaml && dvc exp run` needs every key dvc.yaml lists (DVC refuses missing ones)."""
    import yaml

    stages = yaml.safe_load(ROOT.joinpath("dvc.yaml").read_text())["stages"]
    tracked = {key for stage in stages.values() for key in stage.get("params", [])}
    assert "train.arch" in tracked
    for path in [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]:
        config = yaml.safe_load(path.read_text())
        missing = []
        for key in tracked:
            node = config
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(key)
                    break
                node = node[part]
        assert not missing, f"{path.name} lacks {sorted(missing)}"
