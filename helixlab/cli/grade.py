"""``helixlab grade LAB SUBMISSIONS... --out grades.csv``: the command line of grading.

Its code is ``helixlab.grading``; this module is only the subcommand (``register`` adds
the parser, as every ``helixlab.cli`` module does).

    $ helixlab grade lab1 submissions/ --checks hidden/ --out grades.csv
    helixlab: sandbox: bwrap (read-only system and helixlab, no network, own PIDs, ...)
    helixlab: graded alice.ipynb: 6/6 (ok) in 9.1 s
    helixlab: graded bob.ipynb: 3/6 (errors) in 8.7 s
    helixlab: wrote grades.csv, grades-summary.csv and grades.html (2 submissions, 1 fully
    passing, 0 flagged, 21.3 s)

Exits 0 once the reports are written, whatever the grades; 2 for a usage error (an
unknown lab, a missing file, a hidden check that does not load, ``--sandbox on`` where
bubblewrap cannot run); 1 when grading had to
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
        "--sandbox",
        choices=("auto", "on", "off"),
        default="auto",
        help="run each kernel under bubblewrap: auto (where bwrap works), on, off (%(default)s)",
    )
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
        choose_sandbox,
        plan,
        run_interruptibly,
        submissions,
        write_csv,
        write_html,
        write_summary_csv,
    )

    limits = Limits(
        cell=args.cell_timeout, notebook=args.notebook_timeout, check=args.check_timeout
    )
    try:
        what = plan(args.lab, args.checks, args.files)
        paths = submissions(args.submissions)
        _, sandbox = choose_sandbox(args.sandbox)
    except GradingError as exc:
        _say(str(exc))
        return EXIT_USAGE
    csv_out = Path(args.out)
    html_out = Path(args.html) if args.html else csv_out.with_suffix(".html")
    summary_out = csv_out.with_name(f"{csv_out.stem}-summary.csv")
    reports = (csv_out, html_out, summary_out)
    for target in reports:  # fail now, not after grading everyone
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

    _say(f"sandbox: {sandbox}")
    started = time.monotonic()
    options: dict[str, Any] = {"limits": limits, "jobs": args.jobs, "progress": progress}
    try:
        stopper = Stopper()
        grades = run_interruptibly(
            lambda: agrade(
                what, paths, stopper=stopper, sandbox=args.sandbox, reports=reports, **options
            ),
            stopper.stop,
        )
    except GradingError as exc:
        _say(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("interrupted: every kernel was stopped; no report was written.")
        return EXIT_INTERRUPTED
    csv_path = write_csv(grades, csv_out)
    summary_path = write_summary_csv(grades, summary_out)
    html_path = write_html(grades, html_out, title=f"{args.lab} grades", sandbox=sandbox)
    full = sum(grade.total > 0 and grade.passed == grade.total for grade in grades)
    flagged = sum(bool(grade.flags) for grade in grades)
    count = f"{len(grades)} submission{'' if len(grades) == 1 else 's'}"
    _say(
        f"wrote {csv_path}, {summary_path} and {html_path} ({count}, {full} fully passing, "
        f"{flagged} flagged, {time.monotonic() - started:.1f} s)"
    )
    return EXIT_OK
