"""``helixlab grade LAB SUBMISSIONS... --out grades.csv``: the command line of grading.

Its code is ``helixlab.grading``; this module is only the subcommand (``register`` adds
the parser, as every ``helixlab.cli`` module does).

    $ helixlab grade lab1 submissions/ --checks hidden/ --out grades.csv
    helixlab: graded submissions/alice.ipynb: 6/6 (ok) in 9.1 s
    helixlab: graded submissions/bob.ipynb: 3/6 (errors) in 8.7 s
    helixlab: wrote grades.csv and grades.html (2 submissions, 1 fully passing)

Exits 0 once the reports are written, whatever the grades; 2 for a usage error (an
unknown lab, a missing file, a hidden check that does not load); 1 when grading had to
stop (helixlab's own files changed during the run); 130 on Ctrl-C, once every kernel
is stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def register(commands: Any) -> None:
    """Add ``grade`` to the ``helixlab`` command's subparsers; ``run`` is its default."""
    from ..grading._results import Limits  # not nbformat: every command registers this

    default = Limits()
    grade = commands.add_parser(
        "grade",
        help="grade submitted lab notebooks: a CSV and an HTML report",
        description=(
            "Run each submitted notebook in a fresh kernel, then LAB's checks and any hidden "
            "ones, and write one CSV row per submission and an HTML report."
        ),
    )
    grade.add_argument("lab", metavar="LAB", help="the lab whose checks grade them, e.g. lab1")
    grade.add_argument(
        "submissions", metavar="SUBMISSION", nargs="+", help="notebooks, or folders of them"
    )
    grade.add_argument("--out", required=True, help="the CSV to write (one row per submission)")
    grade.add_argument("--html", help="the HTML report to write (default: --out with .html)")
    grade.add_argument("--checks", metavar="DIR", help="hidden checks: a folder of .py files")
    grade.add_argument(
        "--files", metavar="DIR", help="copied into each submission's working directory"
    )
    grade.add_argument("--jobs", type=int, help="submissions graded at once (default: the cores)")
    grade.add_argument(
        "--cell-timeout", type=float, default=default.cell, help="seconds per cell (%(default)s)"
    )
    grade.add_argument(
        "--notebook-timeout",
        type=float,
        default=default.notebook,
        help="seconds for all of a notebook's cells (%(default)s)",
    )
    grade.add_argument(
        "--check-timeout", type=float, default=default.check, help="seconds per check (%(default)s)"
    )
    grade.set_defaults(run=run)


def _say(text: str) -> None:
    print(f"helixlab: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``helixlab grade``; returns the exit status."""
    # jsonschema (under nbformat) builds the grammar of its optional "iri" format checker
    # at import when rfc3987_syntax is installed: 3 s here, 10 s on a loaded machine, for
    # a format no notebook schema uses. This process is the grader's own: it goes without.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from ..errors import GradingError
    from ..grading import (
        Grade,
        Limits,
        Stopper,
        agrade,
        plan,
        run_interruptibly,
        submissions,
        write_csv,
        write_html,
    )

    limits = Limits(
        cell=args.cell_timeout, notebook=args.notebook_timeout, check=args.check_timeout
    )
    try:
        what = plan(args.lab, args.checks, args.files)
        paths = submissions(args.submissions)
    except GradingError as exc:
        _say(str(exc))
        return EXIT_USAGE
    html_out = Path(args.html) if args.html else Path(args.out).with_suffix(".html")
    for target in (Path(args.out), html_out):  # fail now, not after grading everyone
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _say(f"cannot write {str(target)!r}: {exc.strerror}.")
            return EXIT_USAGE

    def progress(grade: Grade) -> None:
        _say(
            f"graded {grade.submission}: {grade.passed}/{grade.total} ({grade.status}) "
            f"in {grade.seconds:.1f} s"
        )

    started = time.monotonic()
    try:
        stopper = Stopper()
        grades = run_interruptibly(
            lambda: agrade(
                what, paths, limits=limits, jobs=args.jobs, progress=progress, stopper=stopper
            ),
            stopper.stop,
        )
    except GradingError as exc:
        _say(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("interrupted: every kernel was stopped; no report was written.")
        return EXIT_INTERRUPTED
    csv_path = write_csv(grades, args.out)
    html_path = write_html(grades, html_out, title=f"{args.lab} grades")
    full = sum(grade.total > 0 and grade.passed == grade.total for grade in grades)
    _say(
        f"wrote {csv_path} and {html_path} ({len(grades)} submissions, {full} fully passing, "
        f"{time.monotonic() - started:.1f} s)"
    )
    return EXIT_OK
