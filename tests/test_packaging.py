"""The set-up promises of the README: pinned, consistent dependencies and a CI that runs the README's command."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements):
    return {re.split(r"[=<>!~ ]", r, maxsplit=1)[0].lower(): r.replace(" ", "") for r in requirements}


def test_dependencies_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+-]*", req), f"not pinned exactly: {req}"


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    got = _pins([p for p in pip if not p.startswith("-e")])
    assert got == want


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```(?:bash|sh)\n(.*?)\n```", readme, flags=re.S)
    assert commands[:2] == ["bash scripts/reproduce.sh", "bash scripts/test.sh"], commands[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nbash scripts/test.sh\n" in ci
