"""Grading a class: ``helixlab grade LAB SUBMISSIONS... --out grades.csv``.

Each submitted notebook runs in a fresh kernel (nbclient), in a temporary copy of the
working directory, under time limits; then the lab's checks and the instructor's hidden
ones run, each reporting over a channel the submission cannot forge. The results become
a CSV and an HTML report. See the README's "Grading a class" for the threat model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._grade import agrade, grade, plan, run_interruptibly, submissions
    from ._kernel import Stopper
    from ._report import write_csv, write_html
    from ._results import CheckGrade, Grade, Limits, Status
    from ._submission import Plan

#: Where each name lives, imported on first use: nbformat (and the jsonschema format
#: checkers it loads, seconds on a loaded machine) only when grading, not for every
#: ``helixlab`` command that registers ``grade``'s options.
_HOMES = {
    "CheckGrade": "_results",
    "Grade": "_results",
    "Limits": "_results",
    "Plan": "_submission",
    "Status": "_results",
    "Stopper": "_kernel",
    "agrade": "_grade",
    "grade": "_grade",
    "plan": "_grade",
    "run_interruptibly": "_grade",
    "submissions": "_grade",
    "write_csv": "_report",
    "write_html": "_report",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
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
    "grade",
    "plan",
    "run_interruptibly",
    "submissions",
    "write_csv",
    "write_html",
]
