"""Checks judge what the notebook defines (issue 19, items 2–4).

Run as a learner would: cells in IPython's test shell, ``%helix check`` and the live panel
as the notebook shows them.
"""

from __future__ import annotations

import html
from pathlib import Path

import yaml
from test_live_checks import FIXED, marks, panel_of
from test_wrong_solutions import cells_with_the_mistake

from _ipython import ip_fixture, run  # noqa: F401  (the `ip` fixture)

LOOSE = FIXED.replace(
    'level: Literal["debug", "info", "warning", "error"] = "info"', 'level: str = "info"'
)


def line_of(cell: str, text: str) -> int:
    return next(n for n, line in enumerate(cell.splitlines(), 1) if text in line)


def test_a_failed_rerun_is_said_first_and_marks_every_check_failed(ip):
    assert run(ip, FIXED, cell_id="plugin").error is None
    panel = panel_of(ip)
    try:
        assert marks(panel) == [True] * 6
        broken = run(ip, FIXED.replace("def log(self, level, message):", "def log(self)"), "plugin")
        assert broken.error is not None
        assert marks(panel) == [False] * 6
        line = line_of(FIXED, "def log(self, level, message):")  # `%%helix plugin` is line 1
        notice = (
            f"your last edit of my-logger did not run: SyntaxError: expected ':' (cell "
            f"[{broken.result.execution_count}], line {line}). The version still running would "
            f"pass 6/6, but it is not what your notebook defines"
        )
        assert html.escape(notice) in panel.hint.value
        report = run(ip, "%helix check lab1").result.result
        assert notice in str(report).splitlines()[1]
        assert [r.passed for r in report.results] == [False] * 6
        assert report.results[0].hint == (
            "your last edit did not run (see above); the version still running passes this check"
        )

        assert run(ip, FIXED, cell_id="plugin").error is None  # the edit undone
        assert marks(panel) == [True] * 6
        assert "did not run" not in panel.hint.value
    finally:
        panel.close()


def test_an_exception_while_the_cell_runs_names_it_with_its_line(ip):
    assert run(ip, FIXED).error is None
    raising = FIXED.replace(
        "class MyLogger(hx.Plugin):", "oops = 1 / 0\n\nclass MyLogger(hx.Plugin):"
    )
    assert run(ip, raising).error is not None
    report = run(ip, "%helix check lab1").result.result
    assert "did not run: ZeroDivisionError: division by zero (cell [" in report.notice
    assert f", line {line_of(raising, 'oops = 1 / 0')})" in report.notice
    assert not any(r.passed for r in report.results)


def test_a_renamed_plugin_is_not_the_one_the_lab_asks_for(ip):
    assert run(ip, FIXED, cell_id="plugin").error is None
    run(ip, FIXED.replace('name = "my-logger"', 'name = "my-loger"'), cell_id="plugin")
    report = run(ip, "%helix check lab1").result.result
    assert "the cell now defines 'my-loger', not 'my-logger'" in report.notice
    assert not any(r.passed for r in report.results)


def test_a_stored_value_that_blocks_a_stricter_model_is_named_with_its_command(ip):
    assert run(ip, LOOSE, cell_id="plugin").error is None
    run(ip, 'helix.configure("my-logger", {"level": "verbose"})')  # level: str takes it
    refused = run(ip, FIXED, cell_id="plugin")  # the correct, stricter cell
    assert refused.error is not None
    said = str(refused.error)
    assert "the configuration stored for it earlier (level='verbose', set with configure())" in said
    assert "The new definition itself is fine" in said
    command = "helix.configure('my-logger', {'level': 'info'})"
    assert f"clear it with {command}" in said

    report = run(ip, "%helix check lab1").result.result
    first = report.results[0]
    assert str(first).startswith(
        "✗ a configuration value stored earlier blocks your new my-logger "
        f"(cell [{refused.result.execution_count}])"
    )
    assert command in first.hint
    assert "fix it and re-run its cell" not in first.hint

    assert run(ip, command).error is None  # what the refusal says to do, then the cell again
    assert run(ip, FIXED, cell_id="plugin").error is None
    assert run(ip, "%helix check lab1").result.result.passed


def test_a_check_run_prints_its_report_only(ip):
    """Lab 3 without the `return` after the 429: the probe servers' tracebacks stay out."""
    path = Path(__file__).parent / "wrong_solutions/lab3/forgets_to_return_after_the_429.yaml"
    setup, plugin = cells_with_the_mistake(yaml.safe_load(path.read_text()))
    try:
        for source in [*setup, plugin]:
            assert run(ip, source).error is None
        checked = run(ip, "%helix check lab3")
        assert "Traceback" not in checked.stdout + checked.stderr
        assert checked.stderr == ""
        assert len(checked.shown) < 3000
        (failed,) = [r for r in checked.result.result.results if not r.passed]
        assert (
            "Meanwhile the checks' gateway logged: Error serving POST /v1/chat/completions: "
            "RuntimeError: Unexpected ASGI message 'http.response.start' sent, after response "
            "already completed, raised from line "
        ) in failed.hint
        assert "of your __call__()" in failed.hint
    finally:
        upstream = ip.user_ns.get("upstream")
        if upstream is not None and hasattr(upstream, "stop"):
            upstream.stop()
