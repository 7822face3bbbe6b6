"""What grading and the command line import, bounded (issue 23: the grader's cost).

Measured, not asserted in seconds (``benchmarks/bench_grade.py``): the paths that made a
kernel import nbformat and jsonschema's format checkers for nothing, and every
``helixlab`` command import the grader, are checked by what lands in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INKERNEL = ROOT / "helixlab" / "grading" / "_inkernel.py"


def _modules_after(code: str) -> dict:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_kernels_import_of_helixlab_is_whole_but_leaves_the_grader_out():
    """The first grader cell imports every helixlab module (so that all are fingerprinted)
    except helixlab.grading, and so never nbformat or jsonschema."""
    code = (
        f"ns = {{'__name__': 'helixlab_grading'}}\n"
        f"exec(compile(open({str(INKERNEL)!r}).read(), '<g>', 'exec'), ns)\n"
        "assert ns['import_everything']() == []"
    )
    modules = _modules_after(code)
    package = ROOT / "helixlab"
    expected = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if "grading" not in path.parts and path.stem != "__main__"
    }
    assert expected <= modules, sorted(expected - modules)
    assert not {m for m in modules if m.startswith("helixlab.grading")}
    assert not {"nbformat", "jsonschema", "rfc3987_syntax"} & modules


def test_a_helixlab_command_imports_the_grader_only_to_grade():
    modules = _modules_after(
        "import contextlib, io\n"
        "from helixlab.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['serve', '--help'])"
    )
    assert "helixlab.cli.grade" in modules and "helixlab.grading._results" in modules
    assert not {"helixlab.grading._grade", "nbformat", "jsonschema"} & modules
    import helixlab.grading as grading  # its names still resolve, on first use

    assert grading.Limits().cell == 60.0 and callable(grading.grade)
    assert sorted(dir(grading)) == sorted({*dir(grading)} | set(grading.__all__))
