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
        ["make", "--no-print-directory", "-n", "lab", "LAB_PORT=8890"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert "--ServerApp.root_dir=." in shown and "--port=8890" in shown
    assert "--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb" in shown
    landing = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4)
    text = "".join(c.source for c in landing.cells)
    course = [*(ROOT / "notebooks").glob("0[1-9]_*.ipynb"), *(ROOT / "labs").glob("lab*.ipynb")]
    for path in course:  # every notebook and lab is one click away
        assert path.name in text, path.name
    assert "LAB_PORT" in text and "LAB_PORT" in (ROOT / "README.md").read_text()


def test_make_bench_peers_installs_each_peer_by_a_script_make_runs():
    """`make bench-peers` from a fresh clone: no `xargs -I{} {}` (GNU xargs leaves a {} in
    the command's place as it is: "xargs: {}: No such file or directory")."""
    import subprocess

    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "bench-peers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    lines = shown.splitlines()
    assert lines[0] == "tools/setup.sh test"
    assert lines[1] == "PEERS=.venv-peers PORTKEY_DIR=.peers/portkey tools/peers_setup.sh"
    assert lines[2] == (
        ".venv/bin/python -m benchmarks.peers --litellm .venv-peers/bin/litellm "
        "--portkey .peers/portkey"
    )
    assert "xargs" not in shown
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".venv-peers/" in ignored and ".peers/" in ignored


FAKE_PYTHON = """#!/usr/bin/env bash
# `python -m venv DIR`: a venv whose pip logs its arguments and makes bin/litellm
echo "python $*" >>"$LOG"
[[ "$1 $2" == "-m venv" ]] || exit 3
mkdir -p "$3/bin"
cat >"$3/bin/pip" <<'PIP'
#!/usr/bin/env bash
echo "pip $*" >>"$LOG"
printf '#!/bin/sh\\n' >"$(dirname "$0")/litellm"
chmod +x "$(dirname "$0")/litellm"
PIP
chmod +x "$3/bin/pip"
"""
FAKE_NPM = """#!/usr/bin/env bash
echo "npm $* in $PWD" >>"$LOG"
mkdir -p node_modules/@portkey-ai/gateway/build
touch node_modules/@portkey-ai/gateway/build/start-server.js
"""


def test_the_peers_script_installs_what_is_missing_once(tmp_path):
    """tools/peers_setup.sh with a fake Python (its venv's pip) and a fake npm: each peer
    is installed into its own folder, and a second run installs nothing."""
    import os
    import subprocess

    for name, text in (("python", FAKE_PYTHON), ("npm", FAKE_NPM)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    log = tmp_path / "log"
    env = {
        **os.environ,
        "LOG": str(log),
        "PYTHON": str(tmp_path / "python"),
        "NPM": str(tmp_path / "npm"),
        "PEERS": str(tmp_path / "venv-peers"),
        "PORTKEY_DIR": str(tmp_path / "portkey"),
    }
    script = str(ROOT / "tools" / "peers_setup.sh")
    first = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert log.read_text().splitlines() == [
        f"python -m venv {tmp_path / 'venv-peers'}",
        "pip install --quiet litellm[proxy]",
        f"npm install --no-audit --no-fund --loglevel=error @portkey-ai/gateway in "
        f"{tmp_path / 'portkey'}",
    ]
    assert (tmp_path / "portkey" / "package.json").exists()  # npm installs there, not above
    again = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stderr == ""
    assert len(log.read_text().splitlines()) == 3  # nothing installed twice

    (tmp_path / "portkey").rename(tmp_path / "gone")
    without_npm = {**env, "NPM": "no-such-npm-here"}
    third = subprocess.run([script], env=without_npm, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0
    assert "npm is not on PATH: Portkey's gateway is not installed" in third.stderr
