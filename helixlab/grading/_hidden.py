"""Hidden checks: an instructor's extra checks, in the lab checks' own format.

A hidden-check file is a plain Python file in ``--checks DIR`` (``*.py``, sorted by name;
names starting with ``_`` are skipped). It registers checks exactly as
``helixlab/checks/lab1.py`` does::

    from helixlab.checks import Missing, Probe, lab

    check = lab("lab1", "a logging plugin with validated configuration")

    @check("my-logger keeps the message text unchanged")
    def keeps_text(probe: Probe) -> None:
        ...                      # raise Missing("what is wrong, and where to look")

A check receives a :class:`~helixlab.checks.Probe` (the notebook's kernel and namespace),
returns to pass and raises ``Missing(hint)`` to fail; any other exception fails it too,
with what it raised. A file may hold checks for several labs: only those of the lab being
graded run, after the lab's own checks. The file is run from its text, not imported from
its directory: it may import helixlab (``helixlab.checks._probes`` has the labs' helpers)
and installed packages, not its neighbours. The learner's kernel receives the text only
when the checks run, after the notebook's last cell.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from ..errors import GradingError, describe
from . import _inkernel

__all__ = ["expected_checks", "read_hidden"]


def read_hidden(directory: str | Path | None) -> dict[str, str]:
    """``{file name: source}`` of the hidden-check files in ``directory`` (none for None)."""
    if directory is None:
        return {}
    folder = Path(directory)
    if not folder.is_dir():
        raise GradingError(f"--checks {str(directory)!r} is not a directory.")
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(folder.glob("*.py"))
        if not path.name.startswith("_")
    }


def expected_checks(lab_name: str, sources: dict[str, str]) -> tuple[list[str], list[str]]:
    """The descriptions of ``lab_name``'s checks and of its hidden ones, from pristine modules.

    Run in the grader's own process before any submission, so that a bad hidden-check file
    is reported (file and line) at once, and so that the grader knows which checks each
    kernel must report on.
    """
    labs = _lab_modules()
    if lab_name not in labs:
        raise GradingError(f"no lab named {lab_name!r} (labs: {', '.join(labs) or 'none'}).")
    entry = _inkernel.lab_entry(lab_name)
    public = [description for description, _ in entry.checks]
    try:
        hidden = [description for description, _ in _inkernel.hidden_checks(lab_name, sources)]
    except SyntaxError as exc:
        raise GradingError(f"hidden check {exc.filename}, line {exc.lineno}: {exc.msg}.") from None
    except Exception as exc:
        where = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in sources]
        at = f"{where[-1].filename}, line {where[-1].lineno}" if where else "a file"
        raise GradingError(f"hidden check {at}: loading it raised {describe(exc)}.") from None
    return public, hidden


def _lab_modules() -> list[str]:
    import pkgutil

    from .. import checks

    return [
        info.name for info in pkgutil.iter_modules(checks.__path__) if info.name.startswith("lab")
    ]
