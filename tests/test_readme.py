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
