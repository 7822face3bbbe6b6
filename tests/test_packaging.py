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


def test_make_lab_opens_the_course_on_its_landing_notebook_and_takes_lab_port():
    import subprocess

    import nbformat

    shown = subprocess.run(
        ["make", "-n", "lab", "LAB_PORT=8890"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert "--ServerApp.root_dir=." in shown and "--port=8890" in shown
    assert "--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb" in shown
    landing = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4)
    text = "".join(c.source for c in landing.cells)
    course = [*(ROOT / "notebooks").glob("0[1-9]_*.ipynb"), *(ROOT / "labs").glob("lab*.ipynb")]
    for path in course:  # every notebook and lab is one click away
        assert path.name in text, path.name
    assert "LAB_PORT" in text and "LAB_PORT" in (ROOT / "README.md").read_text()
