"""Grading a class: ``helixlab grade LAB SUBMISSIONS... --out grades.csv``.

Each submitted notebook runs in a fresh kernel (nbclient), in a temporary copy of the
working directory, under time limits; then the lab's checks and the instructor's hidden
ones run, each reporting over a channel the submission cannot forge. The results become
a CSV and an HTML report. With ``sandbox`` (``auto``: where bubblewrap works) each kernel
runs under bwrap. See docs/architecture.md, "Grading a class", for the trust model.
"""

from __future__ import annotations

from ._grade import agrade, grade, plan, run_interruptibly, submissions
from ._isolation import choose as choose_sandbox
from ._kernel import Stopper
from ._report import write_csv, write_html, write_summary_csv
from ._results import CheckGrade, Grade, Limits, Status
from ._submission import Plan

__all__ = [
    "CheckGrade",
    "Grade",
    "Limits",
    "Plan",
    "Status",
    "Stopper",
    "agrade",
    "choose_sandbox",
    "grade",
    "plan",
    "run_interruptibly",
    "submissions",
    "write_csv",
    "write_html",
    "write_summary_csv",
]
