"""An install for each user: without an extra, what needs it says so in one line naming the
pip command, and everything else (the kernel, the gateway, `helixlab serve`) still works.

The extras' packages are hidden from a process by a ``sitecustomize`` that sets them to None
in ``sys.modules`` (Python then raises ModuleNotFoundError for them, as if not installed);
tests/test_packaging.py's wheel test installs the base package for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from helixlab._extras import EXTRAS, needs, require
from helixlab.errors import HelixError, MissingExtraError

from _serving import Served

ROOT = Path(__file__).resolve().parent.parent
EVERY_EXTRA = sorted(set().union(*EXTRAS.values()))


def hiding(tmp_path: Path, modules: list[str]) -> dict[str, str]:
    """The environment of a process in which ``modules`` are not installed."""
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.modules.update(dict.fromkeys({modules!r}))\n"
    )
    return {"PYTHONPATH": str(site)}


def run(tmp_path: Path, modules: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **hiding(tmp_path, modules)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "module"), [(e, m) for e, modules in sorted(EXTRAS.items()) for m in sorted(modules)]
)
def test_a_missing_module_of_an_extra_is_one_line_naming_the_install(monkeypatch, extra, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError) as caught:
        require(extra, "this part")
    text = str(caught.value)
    assert "\n" not in text and module in text
    assert text.startswith(f"this part needs the {extra} extra")
    assert text.endswith(f"pip install 'helixlab[{extra}]'")
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, HelixError)
    with pytest.raises(MissingExtraError), needs(extra, "this part"):
        __import__(f"{module}.sub" if module != "IPython" else "IPython.core.error")


def test_a_module_no_extra_installs_is_raised_as_it_is(monkeypatch):
    monkeypatch.setitem(sys.modules, "not_an_extra_module", None)
    with pytest.raises(ModuleNotFoundError) as caught, needs("fleet", "the fleet"):
        import not_an_extra_module  # noqa: F401
    assert not isinstance(caught.value, MissingExtraError)


def test_the_base_install_imports_and_serves_a_chat_completion(tmp_path):
    """No extra at all: helixlab imports, every command registers, and `helixlab serve`
    with no CONFIG answers on real uvicorn from the embedded upstream, saying so."""
    probe = run(
        tmp_path,
        EVERY_EXTRA,
        "-c",
        "import helixlab, helixlab.gateway, helixlab.mockllm, helixlab.llm, helixlab.fleet,"
        " helixlab.grading\nfrom helixlab.__main__ import _parser\n_parser()\n"
        "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{EVERY_EXTRA!r} and sys.modules[m] is not None))",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
    served = Served(["--port", "0"], env=hiding(tmp_path, EVERY_EXTRA), cwd=tmp_path)
    try:
        served.wait_for(r"no CONFIG given: serving custom-provider on the embedded upstream")
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=20)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize(
    ("hidden", "args", "says"),
    [
        (["redis"], ["fleet", "status"], "the fleet needs the fleet extra (redis not installed)"),
        (
            ["prometheus_client"],
            ["serve", "--workers", "2", str(ROOT / "configs" / "plugins.yaml")],
            "the fleet needs the fleet extra (prometheus_client not installed)",
        ),
        (
            ["nbclient"],
            ["grade", "lab1", "submission.ipynb", "--out", "grades.csv"],
            "helixlab grade needs the grade extra (nbclient not installed)",
        ),
    ],
)
def test_a_command_without_its_extra_prints_one_line_and_exits_1(tmp_path, hidden, args, says):
    done = run(tmp_path, hidden, "-m", "helixlab", *args)
    extra = says.split(" extra ")[0].rsplit(" ", 1)[1]
    assert done.returncode == 1
    assert one_line(done.stderr) == f"helixlab: {says}: pip install 'helixlab[{extra}]'"
    assert not (tmp_path / "grades.csv").exists()


def test_load_ext_without_ipywidgets_is_one_usage_line(tmp_path):
    done = run(
        tmp_path,
        ["ipywidgets"],
        "-c",
        "from IPython import start_ipython\n"
        "start_ipython(argv=['--no-banner', '--colors=NoColor', '-c', '%load_ext helixlab'])",
    )
    shown = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if line]
    assert shown == [
        "UsageError: %load_ext helixlab needs the lab extra (ipywidgets not installed): "
        "pip install 'helixlab[lab]'"
    ]


def test_importing_the_widgets_without_ipywidgets_names_the_lab_extra(tmp_path):
    done = run(tmp_path, ["ipywidgets"], "-c", "import helixlab.widgets")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "helixlab.errors.MissingExtraError: helixlab.widgets needs the lab extra "
        "(ipywidgets not installed): pip install 'helixlab[lab]'"
    )


@pytest.mark.timeout(900)
def test_pip_install_helixlab_pulls_no_extra_and_serves(tmp_path):
    """The real thing: a wheel of this tree in a fresh venv with its dependencies only (from
    PyPI or pip's cache): none of the extras' packages, `helixlab serve` answers a chat
    completion, and `helixlab fleet status` is the one line."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", tmp_path / "dist", ROOT], check=True, timeout=400
    )
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", venv], check=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("helixlab-*.whl")
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "-q", "install", wheel],
        check=True,
        timeout=400,
    )
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout
    installed = {line.split("==")[0].lower().replace("_", "-") for line in listed.split()}
    assert "helixlab" in installed and "uvicorn" in installed
    heavy = {"jupyterlab", "nbval", "nbclient", "nbformat", "redis", "prometheus-client"}
    assert not installed & (heavy | {"ipython", "ipykernel", "ipywidgets", "graphviz", "openai"})

    helixlab = str(venv / "bin" / "helixlab")
    fleet = subprocess.run(
        [helixlab, "fleet", "status"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert fleet.returncode == 1
    assert one_line(fleet.stderr) == (
        "helixlab: the fleet needs the fleet extra (prometheus_client, redis not installed): "
        "pip install 'helixlab[fleet]'"
    )
    served = subprocess.Popen(
        [helixlab, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        url = served.stdout.readline().strip()  # the URL, once it serves
        assert url.startswith("http://127.0.0.1:"), served.stderr.read()
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert reply.json()["choices"][0]["message"]["content"] == "Echo: hi"
    finally:
        served.terminate()
        assert served.wait(30) == 0
    assert "no CONFIG given: serving custom-provider on the embedded upstream" in (
        served.stderr.read()
    )
