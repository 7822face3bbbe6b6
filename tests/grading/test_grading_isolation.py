"""What one submission can do to the grader, to the machine and to the others: real kernels.

One class is graded by ``helixlab grade`` (the command, one kernel at a time so that blame
is exact) once with the bubblewrap sandbox and once without, while a thread samples the
grader's memory and the processes the submissions start. The class: one that plants
bytecode for ``helixlab/checks/lab1.py`` in helixlab's ``__pycache__``, the lab 1
solution graded after it, one that leaves children behind and exits, one that prints for
eight seconds without pause, and one that reads the hidden checks and writes the reports.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

import helixlab.checks.lab1 as lab1_checks
from helixlab import grading
from helixlab.__main__ import main
from helixlab.grading import _isolation

from _waiting import wait_until

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
HIDDEN = Path(__file__).resolve().parent / "hidden"
SOLUTION = ROOT / "labs" / "solutions" / "lab1_basic_plugin.ipynb"
PLANTED = (
    Path(lab1_checks.__file__).parent / "__pycache__" / (f"lab1.{sys.implementation.cache_tag}.pyc")
)

#: Bytecode for helixlab/checks/lab1.py, stamped with the source's mtime and size, that
#: Python would run instead of the source: lab 1's checks module then fails to import.
PLANT = (
    "import importlib._bootstrap_external as external, os, sys\n"
    "import helixlab.checks.lab1 as lab1\n"
    "stat = os.stat(lab1.__file__)\n"
    "code = compile(\"raise ImportError('planted bytecode ran')\", lab1.__file__, 'exec')\n"
    "folder = os.path.join(os.path.dirname(lab1.__file__), '__pycache__')\n"
    "os.makedirs(folder, exist_ok=True)\n"
    "target = os.path.join(folder, f'lab1.{sys.implementation.cache_tag}.pyc')\n"
    "with open(target, 'wb') as out:\n"
    "    out.write(external._code_to_timestamp_pyc(code, stat.st_mtime, stat.st_size))\n"
)
SPAWN = (
    "import subprocess, sys\n"
    "sleep = [sys.executable, '-c', 'import time; time.sleep(600)', {token!r}]\n"
    "children = [subprocess.Popen(sleep), subprocess.Popen(sleep, start_new_session=True)]\n"
)
#: The children live 3 s before the kernel exits, so that the test's sampler sees them run
#: (in the sandbox they die with the kernel: nothing else outside can see them).
EXIT = (
    "import os, time\ntime.sleep(3)\n"
    "assert all(child.poll() is None for child in children)\nos._exit(1)"
)
FLOOD = (
    "import sys, time\n"
    "line, written, end = 'x' * 9999 + '\\n', 0, time.monotonic() + 8\n"
    "while time.monotonic() < end:\n"
    "    sys.stdout.write(line)\n"
    "    written += len(line)\n"
    "raise RuntimeError(f'printed {written // 1_000_000} MB')"
)
ATTEMPT = (
    "import os\n"
    "text = open(os.path.join({hidden!r}, 'lab1_extra.py')).read()\n"
    "with open({out!r}, 'w') as out:\n"
    "    out.write('submission,status\\nme,ok\\n')\n"
)
MODES = ["on", "off"]


def _notebook(path: Path, *sources: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]),
                   path)  # fmt: skip
    return path


def _running(token: str) -> list[int]:
    """The processes whose command line holds ``token`` and that run (zombies do not)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if token in (process.info["cmdline"] or []) and process.info["status"] != "zombie":
            found.append(process.pid)
    return found


@pytest.fixture(scope="module", params=MODES)
def graded(request, tmp_path_factory):
    """The class graded by the command with ``--sandbox on`` or ``off``; what was seen."""
    mode = request.param
    if mode == "on" and _isolation.bwrap_problem():
        pytest.skip(f"no sandbox here: {_isolation.bwrap_problem()}")
    folder = tmp_path_factory.mktemp(f"class-{mode}")
    out = tmp_path_factory.mktemp(f"out-{mode}") / "grades.csv"
    token = f"helixlab-test-child-{secrets.token_hex(6)}"
    paths = [
        _notebook(folder / "a_plants.ipynb", PLANT),
        folder / "b_solution.ipynb",
        _notebook(folder / "c_spawns.ipynb", SPAWN.format(token=token), EXIT),
        _notebook(folder / "d_floods.ipynb", FLOOD),
        _notebook(folder / "e_attempts.ipynb", ATTEMPT.format(hidden=str(HIDDEN), out=str(out))),
    ]
    nbformat.write(nbformat.read(SOLUTION, as_version=4), paths[1])
    me = psutil.Process()
    baseline = me.memory_info().rss
    seen = {"peak": baseline, "children": set()}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen["peak"] = max(seen["peak"], me.memory_info().rss)
            seen["children"].update(_running(token))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        status = main(["grade", "lab1", *map(str, paths), "--checks", str(HIDDEN),
                       "--out", str(out), "--jobs", "1", "--sandbox", mode,
                       "--cell-timeout", "30", "--check-timeout", "30"])  # fmt: skip
    finally:
        done.set()
        sampler.join()
        PLANTED.unlink(missing_ok=True)  # whatever happened, never leave it behind
    print(f"--sandbox {mode}: graded {len(paths)} submissions in {time.monotonic() - started:.1f} s"
          f"; the grader's memory grew by {(seen['peak'] - baseline) / 1e6:.0f} MB")  # fmt: skip
    assert status == 0
    rows = {Path(row["submission"]).stem: row for row in csv.DictReader(out.open())}
    return {
        "mode": mode,
        "rows": rows,
        "out": out,
        "growth": seen["peak"] - baseline,
        "children": seen["children"],
        "token": token,
        "planted_after": PLANTED.exists(),
    }


def test_planted_bytecode_changes_no_later_grade(graded):
    rows = graded["rows"]
    assert not graded["planted_after"]
    solution = rows["b_solution"]
    assert (solution["status"], solution["passed"], solution["total"]) == ("ok", "7", "7"), solution
    plants = rows["a_plants"]
    if graded["mode"] == "on":  # helixlab is read-only in the sandbox: the write fails
        assert "Read-only file system" in plants["errors"], plants
    else:  # it was written, no kernel read it, the grader removed it and says so
        assert "wrote into helixlab's files (helixlab/checks/__pycache__/lab1." in plants["flags"]
        assert "removed, and read by no kernel" in plants["flags"], plants


def test_bytecode_beside_the_sources_is_never_read_by_a_grading_kernel(tmp_path):
    """Planted before grading (so no submission is blamed), it runs in a plain Python; the
    lab 1 solution still scores full marks, with and without the sandbox."""
    solution = tmp_path / "solution.ipynb"
    nbformat.write(nbformat.read(SOLUTION, as_version=4), solution)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    try:
        subprocess.run([sys.executable, "-c", PLANT], check=True, timeout=120, env=env)
        # a plain Python: bytecode beside the sources (the test run keeps its own apart)
        plain = subprocess.run([sys.executable, "-c", "import helixlab.checks.lab1"],
                               capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        assert "planted bytecode ran" in plain.stderr  # the threat is real
        modes = ["off"] + ([] if _isolation.bwrap_problem() else ["on"])
        for mode in modes:
            (grade,) = grading.grade("lab1", [solution], checks=HIDDEN, sandbox=mode)
            assert (grade.status, grade.passed, grade.total) == ("ok", 7, 7), (mode, grade)
            assert grade.flags == [], grade
    finally:
        PLANTED.unlink(missing_ok=True)


def test_the_report_says_which_sandbox_was_used(graded):
    rows = graded["rows"]
    page = graded["out"].with_suffix(".html").read_text(encoding="utf-8")
    if graded["mode"] == "on":
        assert "Sandbox: bwrap (read-only system and helixlab" in page
    else:
        assert "Sandbox: none (--sandbox off): kernels run with your permissions" in page
    assert set(rows) == {"a_plants", "b_solution", "c_spawns", "d_floods", "e_attempts"}


def test_a_print_loop_is_truncated_and_the_grader_memory_stays_bounded(graded):
    floods = graded["rows"]["d_floods"]
    printed = int(re.search(r"printed (\d+) MB", floods["errors"]).group(1))
    assert printed >= 100, floods  # hundreds of MB on an idle machine
    assert "cell 1: output truncated (the grader keeps 10,000 characters a cell" in floods["notes"]
    assert graded["growth"] < 150e6, f"the grader grew by {graded['growth'] / 1e6:.0f} MB"


def test_children_of_a_crashed_kernel_are_gone_after_grading(graded):
    spawns = graded["rows"]["c_spawns"]
    assert spawns["status"] == "crashed" and "exit status 1" in spawns["errors"], spawns
    assert len(graded["children"]) >= 2, "the children never ran"  # seen while grading
    # a SIGKILLed process may take a moment to be reaped
    wait_until(lambda: _running(graded["token"]), 10, "the children gone", holds=lambda p: not p)
    assert _running(graded["token"]) == []


def test_reading_the_hidden_checks_and_writing_the_reports_is_flagged(graded):
    rows = graded["rows"]
    attempts = rows["e_attempts"]
    assert "read the hidden checks (lab1_extra.py)" in attempts["flags"], attempts
    assert "wrote to the grader's reports (grades.csv)" in attempts["flags"], attempts
    others = {
        name: row["flags"] for name, row in rows.items() if name not in ("e_attempts", "a_plants")
    }
    assert others == {name: "" for name in others}
    page = graded["out"].with_suffix(".html").read_text(encoding="utf-8")
    assert "1 submission flagged" in page or "2 submissions flagged" in page
    assert "me,ok" not in graded["out"].read_text()  # the report is the grader's


def test_the_sandbox_keeps_the_hidden_checks_and_the_network_away(tmp_path):
    if _isolation.bwrap_problem():
        pytest.skip(_isolation.bwrap_problem())
    probe = (
        "import os, socket\n"
        f"text = open({str(HIDDEN / 'lab1_extra.py')!r}).read()\n"
        "assert 'hidden while grading' in text, 'the real hidden checks were read'\n"
        "assert os.getpid() < 10, os.getpid()\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(server.getsockname()).close()\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\n"
        "except OSError:\n    pass\nelse:\n    raise AssertionError('reached the network')\n"
        f"assert not os.path.exists({str(ROOT / 'labs' / 'solutions')!r})\n"
        "open('/tmp/mine', 'w').write('private')\n"
    )
    notebook = _notebook(tmp_path / "probe.ipynb", probe)
    (grade,) = grading.grade("lab1", [notebook], checks=HIDDEN, sandbox="on")
    assert grade.sandbox == "bwrap"
    assert not [e for e in grade.errors if e.startswith("cell 1")], grade
    assert grade.flags == ["read the hidden checks (lab1_extra.py)"], grade
    assert not Path("/tmp/mine").exists()


def test_sandbox_on_where_bwrap_cannot_run_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_isolation, "bwrap_problem", lambda: "bubblewrap is not installed")
    notebook = _notebook(tmp_path / "n.ipynb", "1")
    out = tmp_path / "g.csv"
    assert main(["grade", "lab1", str(notebook), "--out", str(out), "--sandbox", "on"]) == 2
    assert "--sandbox on: bubblewrap is not installed." in capsys.readouterr().err
    assert grading.choose_sandbox("auto") == (
        False,
        "none (bubblewrap is not installed): kernels run with your permissions",
    )


def test_ctrl_c_in_the_sandbox_stops_the_kernel_and_all_it_started(tmp_path):
    if _isolation.bwrap_problem():
        pytest.skip(_isolation.bwrap_problem())
    token = f"helixlab-test-child-{secrets.token_hex(6)}"
    sleeper = "import time; time.sleep(3600)"
    notebook = _notebook(
        tmp_path / "hangs.ipynb", SPAWN.format(token=token) + f"\nimport time\n{sleeper}"
    )
    command = [sys.executable, "-m", "helixlab", "grade", "lab1", str(notebook),
               "--out", str(tmp_path / "grades.csv"), "--sandbox", "on"]  # fmt: skip
    grader = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)

    def children() -> list[int]:
        assert grader.poll() is None
        return _running(token)

    try:  # the kernel runs the cell: its children sleep
        wait_until(children, 120, "the kernel's two children", holds=lambda p: len(p) >= 2)
        grader.send_signal(signal.SIGINT)
        assert grader.wait(timeout=60) == 130
    finally:
        grader.kill()
    assert "interrupted: every kernel was stopped" in grader.stderr.read()
    wait_until(lambda: _running(token), 10, "the children gone", holds=lambda p: not p)
    assert _running(token) == []
