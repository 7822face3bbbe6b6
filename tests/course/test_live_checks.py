"""``%helix check LAB --live`` and checks that look at a refused definition first.

Run as a learner would: cells in IPython's test shell (post_run_cell fires as in a
notebook), the panel's background runs awaited with ``wait_idle``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helixlab.checks import lab
from helixlab.checks._core import LABS
from helixlab.notebook import session_of

from _ipython import ip_fixture, run  # noqa: F401  (the `ip` fixture)

STARTER = """%%helix plugin
import helixlab as hx

class MyLoggerConfig(hx.PluginConfig):
    pass

class MyLogger(hx.Plugin):
    name = "my-logger"
    config_model = MyLoggerConfig

    def init(self, ctx, config):
        self.config = config
        self.lines = []

    def start(self, ctx):
        print("my-logger says hello")

    def log(self, level, message):
        return None
"""

FIXED = """%%helix plugin
import json
from typing import Literal
import helixlab as hx

LEVELS = ("debug", "info", "warning", "error")

class MyLoggerConfig(hx.PluginConfig):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"

class MyLogger(hx.Plugin):
    name = "my-logger"
    config_model = MyLoggerConfig

    def init(self, ctx, config):
        self.config = config
        self.lines = []

    def start(self, ctx):
        print("my-logger says hello")

    def log(self, level, message):
        if LEVELS.index(level) < LEVELS.index(self.config.level):
            return
        if self.config.format == "json":
            self.lines.append(json.dumps({"level": level, "message": message}))
        else:
            self.lines.append(f"{level.upper()} {message}")
"""

#: new fields without defaults: the kernel refuses the reload
REFUSED = STARTER.replace("    pass\n", "    level: str\n    format: str\n")


def panel_of(ip):
    ran = run(ip, "%helix check lab1 --live")
    assert ran.error is None, ran.shown
    panel = ran.result.result
    assert repr(panel) == "CheckPanel(lab1, live: re-runs the checks after each plugin cell)"
    return panel


def marks(panel) -> list[bool]:
    assert panel.wait_idle()
    return [r.passed for r in panel.report.results]


def test_the_panel_follows_each_plugin_cell_and_says_what_changed(ip):
    run(ip, STARTER)
    panel = panel_of(ip)
    try:
        assert marks(panel) == [True, False, False, False, False, True]
        assert panel.changes.value == "<small>first run</small>"
        assert "MyLoggerConfig has no `level` and `format` yet" in panel.hint.value
        assert panel.checks.value.count("helix-check-fail") == 4

        fixed = run(ip, FIXED)  # re-running the plugin cell is all it takes
        assert fixed.error is None, fixed.shown
        assert marks(panel) == [True] * 6
        assert "every check passes" in panel.hint.value
        assert "now ✓: its config accepts level: warning and format: json" in panel.changes.value
        assert "6/6 checks pass" in panel.heading.value
        # the checks' private kernels started my-logger several times: not a word in the cell
        assert fixed.stdout.count("my-logger says hello") == 1
    finally:
        panel.close()


def test_a_configure_runs_the_checks_again_and_an_ordinary_cell_does_not(ip):
    run(ip, FIXED)
    panel = panel_of(ip)
    try:
        marks(panel)
        runs = panel.runs
        run(ip, "x = 1")
        assert marks(panel) and panel.runs == runs
        run(ip, "%helix configure my-logger level=debug")
        assert marks(panel) and panel.runs == runs + 1
        assert panel.changes.value == "<small>no change since the last run</small>"
    finally:
        panel.close()


def test_the_panels_health_looks_leave_the_notebooks_event_log_alone(ip):
    run(ip, FIXED)
    kernel = ip.user_ns["helix"]
    before = [str(e) for e in kernel.events()]
    panel = panel_of(ip)
    try:
        assert marks(panel)[-1] is True  # "my-logger is healthy" ran
        assert [str(e) for e in kernel.events()] == before
        assert kernel.info()[0].health == "unknown"
    finally:
        panel.close()


def test_a_refused_last_definition_is_what_the_checks_say_first_and_try(ip):
    run(ip, STARTER)
    refused = run(ip, REFUSED)
    assert refused.error is not None
    report = run(ip, "%helix check lab1")
    first, *others = report.result.result.results
    assert not first.passed
    assert first.hint.startswith(
        f"your last definition of my-logger (cell [{refused.result.execution_count}]) was "
        "refused; helix still runs the version before it. The refusal said: "
    )
    assert "required key 'level' is missing" in first.hint
    # the others try the refused class, not the running one (which has no fields at all)
    assert "MyLoggerConfig has no `level`" not in others[0].hint
    assert others[0].hint == (
        "my-logger cannot start with an empty config (required key 'level' is missing; "
        "required key 'format' is missing): give every field of its config model a default."
    )

    run(ip, FIXED)  # a good definition clears the refusal
    assert session_of(ip).refused == {}
    assert run(ip, "%helix check lab1").result.result.passed


def test_a_superseded_run_is_dropped(ip):
    entered, release = threading.Event(), threading.Event()
    check = lab("lab-slow", "a lab whose check waits")

    @check("waits for the test")
    def waits(probe):
        entered.set()
        release.wait(10)

    @check("passes")
    def passes(probe):
        return None

    try:
        panel = run(ip, "%helix check lab-slow --live").result.result
        assert entered.wait(10)
        entered.clear()
        panel.start()  # a newer run: the one waiting must not be shown
        release.set()
        assert panel.wait_idle()
        assert panel.dropped == 1 and panel.runs == 1
        assert [r.passed for r in panel.report.results] == [True, True]
        panel.close()
    finally:
        LABS.pop("lab-slow", None)


def test_a_run_in_progress_drops_its_threads_output_but_not_the_cells_plugins(ip):
    entered, release = threading.Event(), threading.Event()
    check = lab("lab-noisy", "a lab whose check prints from a thread and waits")

    @check("prints from another thread, then waits")
    def noisy(probe):
        printer = threading.Thread(target=print, args=("from the checks' thread",))
        printer.start()
        printer.join()
        entered.set()
        release.wait(10)

    try:
        panel = run(ip, "%helix check lab-noisy --live").result.result
        assert entered.wait(10)  # a run is in progress while the next cells run
        shown = run(ip, STARTER)  # my-logger's start() prints from the kernel's thread
        assert shown.error is None, shown.shown
        assert "my-logger says hello" in shown.stdout
        assert "from the checks' thread" not in shown.stdout
        release.set()
        assert panel.wait_idle()
        panel.close()
    finally:
        release.set()
        LABS.pop("lab-noisy", None)


def test_an_unknown_lab_is_refused_as_without_live(ip):
    ran = run(ip, "%helix check lab-1 --live")
    assert "no lab named 'lab-1'. Did you mean 'lab1'?" in ran.stderr


@pytest.mark.parametrize("lab_name", ["lab1", "lab2", "lab3", "lab4"])
def test_each_exercise_notebook_opens_the_live_panel_near_the_top(lab_name):
    import nbformat

    root = Path(__file__).resolve().parents[2]
    [path] = (root / "labs").glob(f"{lab_name}_*.ipynb")
    code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert f"%helix check {lab_name} --live" in code[:3]


def test_the_muffle_lets_a_cells_own_kernel_operation_print_from_any_thread(capsys):
    from helixlab.notebook._quiet import foreground, muffled_threads

    def from_a_thread(text: str) -> None:
        printer = threading.Thread(target=print, args=(text,))
        printer.start()
        printer.join()

    with muffled_threads():  # a live run in progress
        from_a_thread("dropped")
        print("the main thread's")
        with foreground():  # a cell's reload: its plugins print from the kernel's threads
            from_a_thread("the plugin's")
    out = capsys.readouterr().out
    assert out == "the main thread's\nthe plugin's\n"


_PRINT_WHILE_RUNS_COME_AND_GO = """
import io, sys, threading
from helixlab.notebook._quiet import muffled_threads

class Cell(io.StringIO):  # a stream written in Python, as ipykernel's OutStream is
    def write(self, text):
        return super().write(text)

cell = sys.stdout = Cell()
done = threading.Event()

def live_runs():
    while not done.is_set():
        with muffled_threads():
            pass

runner = threading.Thread(target=live_runs)
runner.start()
for i in range(200_000):
    print("line", i)
done.set()
runner.join()
after = threading.Thread(target=print, args=("a thread's, after the runs",))
after.start()
after.join()
lines = cell.getvalue().splitlines()
sys.__stdout__.write(f"{len(lines)} {lines[-1]}")
"""


def test_the_kernel_survives_printing_while_live_runs_start_and_end_on_other_threads():
    """print() holds sys.stdout by a borrowed reference (CPython < 3.12): swapping the
    muffle out from a worker thread freed it under the main thread's print (SIGSEGV)."""
    done = subprocess.run(
        [sys.executable, "-c", _PRINT_WHILE_RUNS_COME_AND_GO],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "200001 a thread's, after the runs"
