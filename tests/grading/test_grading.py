"""`helixlab grade`: real kernels (nbclient) grading the committed labs and broken submissions.

One class of lab 1 submissions is graded once per module (in parallel, as an instructor
would), and each test reads its grades: the solution, the exercise, and submissions that
hang, ignore the interrupt, exit, segfault, delete files, patch helixlab's checks, forge
results, or do not parse.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import html
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import helixlab.checks._core as checks_core
from helixlab import GradingError, grading
from helixlab.__main__ import main
from helixlab.grading import _inkernel, _integrity

from _waiting import wait_until

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "labs"
HIDDEN = Path(__file__).resolve().parent / "hidden"
LIMITS = grading.Limits(cell=10, notebook=120, check=30)
EXERCISE = {
    "lab1": LABS / "lab1_basic_plugin.ipynb",
    "lab2": LABS / "lab2_provider_plugin.ipynb",
    "lab3": LABS / "lab3_middleware_plugin.ipynb",
    "lab4": LABS / "lab4_hot_reload.ipynb",
}
HIDDEN_CHECK = "at level warning, a warning is recorded with its text unchanged"

#: The cells each broken submission adds before the lab's `%helix check` cell.
BROKEN = {
    "hang": ("solution", "import time\ntime.sleep(3600)"),
    "deaf": (
        "solution",
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(0.1)",
    ),
    "exits": ("solution", "import os\nos._exit(3)"),
    "segfault": ("solution", "import ctypes\nctypes.string_at(0)"),
    "deletes": (
        "solution",
        "import os, shutil\nassert open('data/course.txt').read() == 'shared'\n"
        "for victim in {victims!r}:\n    os.remove(victim)\n"
        "shutil.rmtree(os.getcwd())",
    ),
    "patches_runner": (
        "exercise",
        "import helixlab.checks._core as core\n"
        "from helixlab.checks import CheckReport, CheckResult\n"
        "def run_check(name, kernel, namespace, strict=False):\n"
        "    passing = [CheckResult(d, True) for d, _ in core.LABS[name].checks]\n"
        "    return CheckReport(name, '', passing)\n"
        "core.run_check = run_check\n"
        "import helixlab.checks\nhelixlab.checks.run_check = run_check",
    ),
    "patches_checks": (
        "exercise",
        "from helixlab.checks import LABS\nimport helixlab.checks.lab1\n"
        "for entry in LABS.values():\n"
        "    entry.checks[:] = [(d, lambda probe: None) for d, _ in entry.checks]",
    ),
    "patches_kernel": (
        "exercise",
        "import helixlab as hx\nhx.Kernel.configure = lambda self, name, config: None",
    ),
    "prints_results": (
        "exercise",
        "from IPython.display import display\n"
        "print('lab1: 6/6 checks pass\\n✓ its config accepts level: warning and format: json')\n"
        f"display({{{_inkernel.MIME!r}: {{'nonce': 'guess', 'kind': 'check', 'index': 1, "
        "'passed': True}}, raw=True)",
    ),
    "usage_error": ("solution", "%helix reload my-loger"),
    "forges_from_a_thread": (
        "exercise",
        "import threading, time\nfrom IPython.display import display\n"
        "def forge():\n    while True:\n"
        f"        forged = {{{_inkernel.MIME!r}: {{'nonce': '?', 'passed': True}}}}\n"
        "        display(forged, raw=True)\n        time.sleep(0.02)\n"
        "threading.Thread(target=forge, daemon=True).start()",
    ),
}


def _check_cell(nb) -> int:
    """The lab's closing `%helix check labN` cell (a live panel near the top is another)."""
    return max(
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.source.lstrip().startswith("%helix check")
    )


def _committed_marks(path: Path) -> dict[str, bool]:
    """What the committed run of a notebook's `%helix check` cell showed: check -> passed."""
    nb = nbformat.read(path, as_version=4)
    text = "".join(
        output.get("data", {}).get("text/plain", "") + output.get("text", "")
        for output in nb.cells[_check_cell(nb)].outputs
    )
    return {line[2:]: line[0] == "✓" for line in text.splitlines() if line[:2] in ("✓ ", "✗ ")}


def _marks(grade: grading.Grade) -> dict[str, bool]:
    return {check.description: check.passed for check in grade.checks if not check.hidden}


@pytest.fixture(scope="module")
def lab1_class(tmp_path_factory) -> dict[str, grading.Grade]:
    """Every lab 1 submission graded in one run; name -> Grade."""
    folder = tmp_path_factory.mktemp("class")
    bases = {
        "solution": nbformat.read(LABS / "solutions" / "lab1_basic_plugin.ipynb", as_version=4),
        "exercise": nbformat.read(EXERCISE["lab1"], as_version=4),
    }
    paths = {}
    for name, nb in bases.items():
        paths[name] = folder / f"{name}.ipynb"
        nbformat.write(nb, paths[name])
    paths["victim"] = folder / "victim.ipynb"  # the solution again: "deletes" removes the file
    nbformat.write(bases["solution"], paths["victim"])
    for name, (base, code) in BROKEN.items():
        nb = copy.deepcopy(bases[base])
        code = code.replace("{victims!r}", repr([str(paths["victim"])]))
        nb.cells.insert(_check_cell(nb), nbformat.v4.new_code_cell(code))
        paths[name] = folder / f"{name}.ipynb"
        nbformat.write(nb, paths[name])
    syntax = copy.deepcopy(bases["exercise"])
    plugin_cell = next(c for c in syntax.cells if c.source.startswith("%%helix plugin"))
    plugin_cell.source = plugin_cell.source.replace(
        "class MyLoggerConfig", "class MyLoggerConfig(:"
    )
    paths["syntax_error"] = folder / "syntax_error.ipynb"
    nbformat.write(syntax, paths["syntax_error"])
    paths["not_a_notebook"] = folder / "not_a_notebook.ipynb"
    paths["not_a_notebook"].write_text("{ this is not JSON")

    files = tmp_path_factory.mktemp("files")  # --files: copied into each working directory
    (files / "data").mkdir()
    (files / "data" / "course.txt").write_text("shared")
    digests = _integrity.package_digests()
    runner = checks_core.run_check
    started = time.monotonic()
    grades = grading.grade("lab1", list(paths.values()), checks=HIDDEN, files=files, limits=LIMITS)
    elapsed = time.monotonic() - started
    print(f"graded {len(grades)} lab 1 submissions in {elapsed:.1f} s")
    # nothing a submission did reached the grader's process or helixlab's files
    assert checks_core.run_check is runner
    assert _integrity.package_digests() == digests
    assert (files / "data" / "course.txt").read_text() == "shared"
    return {Path(grade.submission).stem: grade for grade in grades}


def test_the_solution_passes_every_check_the_hidden_one_included(lab1_class):
    grade = lab1_class["solution"]
    assert grade.status == grading.Status.OK, grade
    assert grade.passed == grade.total == 7, grade
    assert grade.checks[-1].hidden and grade.checks[-1].description == HIDDEN_CHECK
    assert grade.errors == []


def test_the_exercise_fails_exactly_where_its_own_check_cell_says(lab1_class):
    grade = lab1_class["exercise"]
    expected = _committed_marks(EXERCISE["lab1"])
    assert _marks(grade) == expected, grade
    assert not all(expected.values())
    hidden = grade.checks[-1]
    assert hidden.hidden and not hidden.passed and "refused" in hidden.hint


def test_a_hanging_cell_fails_alone_and_the_checks_still_run(lab1_class):
    grade = lab1_class["hang"]
    assert grade.status == grading.Status.TIMEOUT
    assert any(re.match(r"cell \d+: did not finish within 10 s", e) for e in grade.errors), grade
    assert grade.passed == grade.total, grade


def test_a_cell_that_ignores_the_interrupt_gets_its_kernel_stopped(lab1_class):
    grade = lab1_class["deaf"]
    assert grade.status == grading.Status.TIMEOUT
    assert grade.passed == 0
    assert all("stayed busy" in check.hint for check in grade.checks), grade


@pytest.mark.parametrize(("name", "how"), [("exits", "exit status 3"), ("segfault", "signal 11")])
def test_a_crashed_kernel_fails_every_check_and_says_where(lab1_class, name, how):
    grade = lab1_class[name]
    assert grade.status == grading.Status.CRASHED
    assert grade.passed == 0
    assert any("the kernel died" in e and how in e for e in grade.errors), grade
    assert all(re.search(r"the kernel died in cell \d+", c.hint) for c in grade.checks)


def test_deleting_files_touches_only_its_own_copy(lab1_class):
    grade = lab1_class["deletes"]
    if grade.sandbox == "bwrap":  # it found --files; the other submission is out of reach
        assert len(grade.errors) == 1 and "Read-only file system" in grade.errors[0], grade
    else:
        assert grade.errors == [], grade  # it found --files in its working directory
    assert grade.passed == grade.total, grade  # its state was in memory; its copy is gone
    victim = lab1_class["victim"]  # its file was deleted by "deletes", yet read before
    assert victim.status == grading.Status.OK and victim.passed == victim.total, victim


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("patches_runner", "helixlab.checks._core.run_check"),
        ("patches_checks", "LABS['lab1']"),
        ("patches_kernel", "helixlab.kernel._kernel.Kernel.configure"),
    ],
)
def test_a_submission_that_patches_helixlab_scores_nothing(lab1_class, name, changed):
    grade = lab1_class[name]
    assert grade.status == grading.Status.TAMPERED
    assert grade.passed == 0
    assert all(changed in check.hint for check in grade.checks), grade


def test_printed_or_displayed_fake_results_are_ignored(lab1_class):
    grade = lab1_class["prints_results"]
    assert _marks(grade) == _marks(lab1_class["exercise"]), grade


def test_results_forged_from_a_thread_never_raise_a_grade(lab1_class):
    grade = lab1_class["forges_from_a_thread"]
    exercise = lab1_class["exercise"]
    assert grade.status in (grading.Status.TAMPERED, grading.Status.OK), grade
    assert grade.passed <= exercise.passed
    for check, honest in zip(grade.checks, exercise.checks, strict=True):
        assert honest.passed or not check.passed, grade


def test_a_check_that_hangs_fails_alone_and_the_notebook_limit_stops_the_cells(tmp_path):
    solution = nbformat.read(LABS / "solutions" / "lab1_basic_plugin.ipynb", as_version=4)
    hangs = copy.deepcopy(solution)  # the learner's log() never returns for the checks' text
    plugin_cell = next(c for c in hangs.cells if c.source.startswith("%%helix plugin"))
    plugin_cell.source += (
        "\n\nimport time as _time\n_kept = MyLogger.log\n\n\n"
        "def _log(self, level, message):\n"
        "    if message.startswith('a ') and message.endswith(' message'):\n"
        "        _time.sleep(3600)\n"
        "    return _kept(self, level, message)\n\n\n"
        "MyLogger.log = _log\n"
    )
    slow = copy.deepcopy(solution)
    for _ in range(3):
        slow.cells.insert(
            _check_cell(slow), nbformat.v4.new_code_cell("import time; time.sleep(5)")
        )
    nbformat.write(hangs, tmp_path / "hangs.ipynb")
    nbformat.write(slow, tmp_path / "slow.ipynb")
    limits = grading.Limits(cell=10, notebook=8, check=4)
    hung, late = grading.grade("lab1", [tmp_path / "hangs.ipynb", tmp_path / "slow.ipynb"],
                               limits=limits)  # fmt: skip
    assert hung.status == grading.Status.TIMEOUT
    marks = {c.description: (c.passed, c.hint) for c in hung.checks}
    stuck = [d for d, (passed, hint) in marks.items() if "did not finish within 4 s" in hint]
    assert stuck and all(not marks[d][0] for d in stuck)
    assert [d for d, (passed, _) in marks.items() if passed] == [
        d for d in marks if d not in stuck
    ], hung  # every other check still ran, and passed
    assert late.status == grading.Status.TIMEOUT
    assert any("the notebook's time limit (8 s) ran out" in e for e in late.errors), late
    assert late.passed == late.total  # the plugin cells had run: the checks still pass


def test_a_syntax_error_is_named_with_its_cell(lab1_class):
    grade = lab1_class["syntax_error"]
    assert grade.status == grading.Status.ERRORS
    assert re.match(r"cell \d+: SyntaxError", grade.errors[0]), grade
    assert "keep serving" not in grade.errors[0]  # a grading kernel served nothing before
    assert grade.passed == 0


def test_a_printed_usage_error_reaches_the_errors(lab1_class):
    """`%helix reload my-loger`: IPython prints the UsageError; the reply says it failed."""
    grade = lab1_class["usage_error"]
    assert grade.status == grading.Status.ERRORS, grade
    assert len(grade.errors) == 1, grade
    assert re.fullmatch(r"cell \d+: UsageError: %helix: .*'my-loger'.*", grade.errors[0]), grade
    assert grade.passed == grade.total  # the rest of the notebook ran


def test_the_same_hint_is_shown_once_per_cause(lab1_class, tmp_path):
    grade = lab1_class["exits"]  # every check fails with the same hint: the kernel died
    hints = {check.hint for check in grade.checks}
    assert len(hints) == 1 and len(grade.checks) == 7
    (hint,) = hints
    text = str(grade)
    assert text.count(hint) == 1, text
    assert text.count("the same cause as “my-logger is registered and active in helix” above") == 6
    page = grading.write_html([grade], tmp_path / "g.html").read_text(encoding="utf-8")
    assert page.count(html.escape(hint)) == 1


def test_submissions_are_named_relative_to_their_folder(lab1_class):
    names = sorted(grade.submission for grade in lab1_class.values())
    assert all(not Path(name).is_absolute() and "/" not in name for name in names), names
    assert all("helixlab-grade-" not in e for g in lab1_class.values() for e in g.errors)


def test_a_file_that_is_not_a_notebook_is_graded_unreadable(lab1_class):
    grade = lab1_class["not_a_notebook"]
    assert grade.status == grading.Status.UNREADABLE
    assert grade.passed == 0 and grade.total == 7
    assert "not a notebook" in grade.errors[0]


def test_the_command_grades_labs_2_to_4_and_writes_the_reports(tmp_path, capsys):
    solutions = [LABS / "solutions" / path.name for path in EXERCISE.values()][1:]
    exercises = list(EXERCISE.values())[1:]
    graded = {}
    started = time.monotonic()
    for lab, exercise, solution in zip(["lab2", "lab3", "lab4"], exercises, solutions, strict=True):
        out = tmp_path / lab / "grades.csv"
        status = main(["grade", lab, str(exercise), str(solution), "--out", str(out),
                       "--cell-timeout", "30", "--check-timeout", "60"])  # fmt: skip
        assert status == 0, capsys.readouterr().err
        graded[lab] = list(csv.DictReader(out.open(encoding="utf-8")))
        page = out.with_suffix(".html").read_text(encoding="utf-8")
        for row in graded[lab]:
            assert row["submission"] in page
    print(f"graded 6 submissions of labs 2-4 in {time.monotonic() - started:.1f} s")
    for lab, exercise in zip(["lab2", "lab3", "lab4"], exercises, strict=True):
        first, second = graded[lab]
        assert (second["status"], second["passed"]) == ("ok", second["total"]), second
        expected = _committed_marks(exercise)
        assert {d: first[d] == "pass" for d in expected} == expected, first
        assert first["passed"] == str(sum(expected.values()))
    assert "wrote" in capsys.readouterr().err


def test_the_csv_has_a_row_per_submission_and_a_column_per_check(lab1_class, tmp_path):
    grades = [lab1_class["solution"], lab1_class["exercise"], lab1_class["exits"]]
    path = grading.write_csv(grades, tmp_path / "grades.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    header = list(rows[0])
    assert header[:5] == ["submission", "status", "score", "passed", "total"]
    assert header[-5:] == [f"hidden: {HIDDEN_CHECK}", "errors", "flags", "notes", "seconds"]
    assert [row["score"] for row in rows] == ["100.0", str(lab1_class["exercise"].score), "0.0"]
    assert rows[2]["status"] == "crashed" and "exit status 3" in rows[2]["errors"]
    assert {rows[0][c.description] for c in grades[0].checks if not c.hidden} == {"pass"}
    assert float(rows[0]["seconds"]) > 0


def test_the_html_report_shows_each_failing_hint_escaped(lab1_class, tmp_path):
    grades = [lab1_class["exercise"]]
    page = grading.write_html(grades, tmp_path / "grades.html").read_text(encoding="utf-8")
    for check in grades[0].checks:
        if not check.passed:
            assert f"hint: {check.hint}".replace("<", "&lt;").replace(">", "&gt;") in page
    assert "<see step 2>" not in page and "&lt;see step 2&gt;" in page


def test_the_summary_counts_each_check_and_spreads_the_scores(lab1_class, tmp_path):
    grades = [lab1_class[name] for name in ("solution", "exercise", "exits", "victim")]
    path = grading.write_summary_csv(grades, tmp_path / "summary.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert list(rows[0]) == ["kind", "name", "submissions", "of", "percent"]
    checks = {row["name"]: int(row["submissions"]) for row in rows if row["kind"] == "check"}
    for index, (column, passed) in enumerate(checks.items()):
        assert passed == sum(grade.checks[index].passed for grade in grades), column
    assert f"hidden: {HIDDEN_CHECK}" in checks
    scores = [
        (row["name"], row["submissions"], row["of"]) for row in rows if row["kind"] == "score"
    ]
    exercise = f"{lab1_class['exercise'].passed}/7"
    assert scores == [("7/7", "2", "4"), (exercise, "1", "4"), ("0/7", "1", "4")]
    page = grading.write_html(grades, tmp_path / "g.html", sandbox="bwrap").read_text()
    assert page.index("<h2>Scores</h2>") < page.index("<h2>Checks</h2>")
    assert page.index("<h2>Checks</h2>") < page.index("<h2>Submissions</h2>")
    assert "4 submissions; cell N is the N-th cell of the notebook" in page
    one = grading.write_html(grades[:1], tmp_path / "one.html").read_text()
    assert "1 submission;" in one and "1 submissions" not in one


def test_an_unknown_lab_or_a_missing_submission_is_a_usage_error(tmp_path, capsys):
    assert main(["grade", "lab9", str(EXERCISE["lab1"]), "--out", str(tmp_path / "g.csv")]) == 2
    assert "no lab named 'lab9' (labs: lab1, lab2, lab3, lab4)" in capsys.readouterr().err
    assert main(["grade", "lab1", str(tmp_path / "nope.ipynb"), "--out", "g.csv"]) == 2
    assert "nope.ipynb' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


def test_a_hidden_check_that_does_not_load_is_named_with_file_and_line(tmp_path):
    (tmp_path / "broken.py").write_text("from helixlab.checks import lab\n\ndef oops(:\n")
    with pytest.raises(GradingError, match=r"hidden check broken\.py, line 3: invalid syntax"):
        grading.plan("lab1", tmp_path)
    (tmp_path / "broken.py").write_text("x = 1\nraise RuntimeError('no database')\n")
    with pytest.raises(GradingError, match=r"broken\.py, line 2: .*RuntimeError: no database"):
        grading.plan("lab1", tmp_path)


def test_hidden_checks_leave_the_public_lab_as_it_was():
    before = [d for d, _ in checks_core.LABS["lab1"].checks] if "lab1" in checks_core.LABS else None
    what = grading.plan("lab1", HIDDEN)
    assert what.hidden == (HIDDEN_CHECK,)  # the lab 2 check in the same file is not lab 1's
    assert [d for d, _ in checks_core.LABS["lab1"].checks] == list(what.public)
    assert before is None or before == list(what.public)
    assert "lab2" not in checks_core.LABS or all(
        "another lab" not in d for d, _ in checks_core.LABS["lab2"].checks
    )


def test_the_fingerprint_sees_a_replaced_function_a_new_method_and_a_swapped_code(monkeypatch):
    _inkernel.import_everything()
    before = _inkernel.fingerprint()
    monkeypatch.setattr(checks_core, "run_check", lambda *a, **k: None)
    monkeypatch.setattr(checks_core.CheckReport, "passed", property(lambda self: True))
    assert set(_changes(before)) == {
        "helixlab.checks._core:run_check",
        "helixlab.checks._core:CheckReport.passed",
    }
    monkeypatch.undo()
    assert _changes(before) == []
    original = checks_core.Probe.need.__code__
    monkeypatch.setattr(checks_core.Probe.need, "__code__", (lambda self, n, h: None).__code__)
    assert _changes(before) == ["helixlab.checks._core:Probe.need"]
    checks_core.Probe.need.__code__ = original


def _changes(before):
    from helixlab.grading._submission import _changes as changes

    return changes(before, _inkernel.fingerprint())


def test_changed_package_files_are_found(tmp_path):
    root = tmp_path / "helixlab"
    (root / "checks").mkdir(parents=True)
    (root / "checks" / "lab1.py").write_text("ok = True\n")
    before = _integrity.package_digests(root)
    (root / "checks" / "lab1.py").write_text("ok = 'always'\n")
    (root / "extra.py").write_text("")
    assert _integrity.changed_files(before, root) == [
        "helixlab/checks/lab1.py",
        "helixlab/extra.py",
    ]
    assert before == {"helixlab/checks/lab1.py": hashlib.sha256(b"ok = True\n").hexdigest()}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_ctrl_c_stops_every_kernel_and_writes_no_report(tmp_path):
    marker = tmp_path / "kernel.pid"
    code = f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(3600)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbformat.write(nb, tmp_path / "hangs.ipynb")
    out = tmp_path / "grades.csv"
    command = [sys.executable, "-m", "helixlab", "grade", "lab1", str(tmp_path / "hangs.ipynb")]
    command += ["--sandbox", "off"]  # the kernel writes its pid into this test's /tmp
    grader = subprocess.Popen([*command, "--out", str(out)], stderr=subprocess.PIPE, text=True)

    def pid_written() -> bool:
        assert grader.poll() is None
        return marker.exists() and bool(marker.read_text())

    try:
        wait_until(pid_written, 60, "the kernel running the cell")
        kernel = int(marker.read_text())
        grader.send_signal(signal.SIGINT)
        assert grader.wait(timeout=30) == 130
    finally:
        grader.kill()
    assert "interrupted: every kernel was stopped" in grader.stderr.read()
    assert not _alive(kernel)
    assert not out.exists()
