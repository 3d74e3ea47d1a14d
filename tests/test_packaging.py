"""The conda environment lists exactly the packages pyproject.toml declares."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    lines = [line.strip()[2:].strip() for line in (ROOT / "environment.yml").read_text().splitlines() if line.strip().startswith("- ")]
    pip_lines = [line for line in lines[lines.index("pip:") + 1 :] if not line.startswith("-e")]
    listed = {_name(r): r.replace(" ", "") for r in pip_lines}
    assert listed == declared


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/test.sh" in ci
    assert "panel serve apps/explorer.py" in readme
