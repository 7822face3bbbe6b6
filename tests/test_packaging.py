"""The set-up files agree with each other: a newcomer gets the same packages either way."""

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements):
    return {Requirement(r).name.lower(): str(Requirement(r)) for r in requirements}


def test_environment_yml_pip_list_matches_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = [p for p in pip if not p.startswith("-e")]
    assert _names(pip) == _names(project["dependencies"])
    assert "graphviz" in env["dependencies"], "conda must bring the dot binary"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_the_shipped_course_config_loads_every_plugin():
    """`helixlab serve configs/plugins.yaml` (the README's example) starts all three."""
    import helixlab as hx

    with hx.Kernel.from_config(ROOT / "configs" / "plugins.yaml") as kernel:
        report = kernel.load_all()
        assert report.ok and set(report) == {"custom-provider", "rate-limiter", "custom-logger"}
