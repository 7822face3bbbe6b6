"""Grading a class: ``helixlab grade LAB SUBMISSIONS... --out grades.csv``.

Each submitted notebook runs in a fresh kernel (nbclient), in a temporary copy of the
working directory, under time limits; then the lab's checks and the instructor's hidden
ones run, each reporting over a channel the submission cannot forge. The results become
a CSV and an HTML report. With ``sandbox`` (``auto``: where bubblewrap works) each kernel
runs under bwrap. See docs/architecture.md, "Grading a class", for the trust model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._grade import agrade, grade, plan, run_interruptibly, submissions
    from ._isolation import choose as choose_sandbox
    from ._kernel import Stopper
    from ._report import write_csv, write_html, write_summary_csv
    from ._results import CheckGrade, Grade, Limits, Status
    from ._submission import Plan

#: Where each name lives (its module, its name there), imported on first use: nbformat (and
#: the jsonschema format checkers it loads, seconds on a loaded machine) only when grading,
#: not for every ``helixlab`` command that registers ``grade``'s options.
_HOMES: dict[str, tuple[str, str]] = {
    "CheckGrade": ("_results", "CheckGrade"),
    "Grade": ("_results", "Grade"),
    "Limits": ("_results", "Limits"),
    "Plan": ("_submission", "Plan"),
    "Status": ("_results", "Status"),
    "Stopper": ("_kernel", "Stopper"),
    "agrade": ("_grade", "agrade"),
    "choose_sandbox": ("_isolation", "choose"),
    "grade": ("_grade", "grade"),
    "plan": ("_grade", "plan"),
    "run_interruptibly": ("_grade", "run_interruptibly"),
    "submissions": ("_grade", "submissions"),
    "write_csv": ("_report", "write_csv"),
    "write_html": ("_report", "write_html"),
    "write_summary_csv": ("_report", "write_summary_csv"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = home
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
