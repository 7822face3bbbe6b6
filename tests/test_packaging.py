"""The set-up files agree with each other: a newcomer gets the same packages either way."""

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# the distributions whose import name differs from their name
IMPORT_NAMES = {"ipython": "IPython", "prometheus-client": "prometheus_client"}


def _names(requirements):
    return {canonicalize_name(Requirement(r).name): str(Requirement(r)) for r in requirements}


def requirements(*extras):
    """pyproject.toml's dependencies plus those of ``extras``, ``helixlab[...]`` expanded."""
    found, todo, seen = list(PROJECT["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in PROJECT["optional-dependencies"][extra]:
            requirement = Requirement(spec)
            if requirement.name == "helixlab":
                todo.extend(requirement.extras)
            else:
                found.append(spec)
    return found


def test_environment_yml_pip_list_is_the_lab_install():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .[lab]" in pip
    pip = [p for p in pip if not p.startswith("-e")]
    assert _names(pip) == _names(requirements("lab"))
    assert "graphviz" in env["dependencies"], "conda must bring the dot binary"
    assert "redis" in env["dependencies"], "the fleet notebook starts a redis-server"


def test_the_base_install_is_the_kernel_gateway_and_serve_only():
    base = set(_names(PROJECT["dependencies"]))
    heavy = {"jupyterlab", "ipython", "ipykernel", "ipywidgets", "nbval", "nbclient", "nbformat"}
    assert not base & (heavy | {"redis", "prometheus-client", "graphviz", "openai"})
    assert {"httpx", "httpcore", "starlette", "uvicorn"} <= base


def test_test_extra_is_every_extra_and_each_extra_is_what_its_users_need():
    extras = PROJECT["optional-dependencies"]
    assert set(extras) == {"lab", "fleet", "grade", "test"}
    assert set(_names(requirements("test"))) >= set(_names(requirements("lab", "fleet", "grade")))
    assert {"jupyterlab", "ipywidgets", "graphviz", "nbval", "openai", "redis"} <= set(
        _names(requirements("lab"))
    )
    assert set(_names(extras["fleet"])) == {"redis", "prometheus-client"}
    assert {"nbclient", "nbformat"} <= set(_names(extras["grade"]))


def test_the_one_line_helper_knows_what_each_extra_installs():
    """helixlab/_extras.py's table is pyproject's extras by import name."""
    from helixlab._extras import EXTRAS

    for extra, modules in EXTRAS.items():
        base = set(_names(PROJECT["dependencies"]))
        names = set(_names(requirements(extra))) - base
        assert modules == {IMPORT_NAMES.get(n, n) for n in names}, extra


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
