"""Grading a class: every submission in its own kernel, several at once, each graded alone."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._extras import require
from ..errors import GradingError
from . import _hidden, _integrity
from ._kernel import Stopper
from ._results import Grade, Limits, Status
from ._submission import Plan, Submission, grade_submission

T = TypeVar("T")

__all__ = ["agrade", "grade", "plan", "run_interruptibly", "submissions"]


def plan(lab: str, checks: str | Path | None = None, files: str | Path | None = None) -> Plan:
    """What to grade against: ``lab``'s checks, the hidden ones in ``checks``, ``files`` to copy."""
    require("grade", "helixlab grade")  # before anything runs: one line if it is missing
    sources = _hidden.read_hidden(checks)
    public, hidden = _hidden.expected_checks(lab, sources)
    folder = None
    if files is not None:
        folder = Path(files)
        if not folder.is_dir():
            raise GradingError(f"--files {str(files)!r} is not a directory.")
    return Plan(lab, tuple(public), tuple(hidden), sources, folder)


def submissions(paths: Iterable[str | Path]) -> list[Path]:
    """The notebooks named: files as given, directories searched for ``*.ipynb``."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts
            )
        elif path.is_file():
            found.append(path)
        else:
            raise GradingError(f"submission {str(item)!r} does not exist.")
    if not found:
        raise GradingError("no submissions to grade (no .ipynb file among the paths given).")
    return found


def _labels(paths: Sequence[Path]) -> list[str]:
    """Each submission's name in the report: its path, relative to here when it is below."""
    labels = []
    for path in paths:
        try:
            labels.append(str(path.resolve().relative_to(Path.cwd())))
        except ValueError:
            labels.append(str(path))
    return labels


async def agrade(
    what: Plan,
    paths: Sequence[Path],
    *,
    limits: Limits | None = None,
    jobs: int | None = None,
    progress: Callable[[Grade], None] | None = None,
    stopper: Stopper | None = None,
) -> list[Grade]:
    """Grade ``paths`` against ``what``, ``jobs`` at a time (default: the cores); in order.

    After each submission, helixlab's own files are compared with their digests from the
    start: if a submission changed them, nothing graded afterwards could be trusted, and
    grading stops with GradingError.
    """
    limits = limits or Limits()
    digests = _integrity.package_digests()
    gate = asyncio.Semaphore(max(1, jobs or os.cpu_count() or 1))
    running: set[str] = set()

    async def one(submission: Submission) -> Grade:
        label = submission.label
        async with gate:
            if stopper is not None and stopper.requested:  # Ctrl-C: start no more kernels
                return Grade(label, Status.FAILED, [], ["not graded: interrupted"])
            running.add(label)
            try:
                grade = await grade_submission(submission, what, limits, stopper)
            finally:
                running.discard(label)
            changed = _integrity.changed_files(digests)
            if changed:
                raise GradingError(
                    f"helixlab's files changed while grading {label!r}"
                    f"{' (with ' + ', '.join(sorted(running)) + ')' if running else ''}: "
                    f"{', '.join(changed)}; no grade can be trusted. Reinstall helixlab, and "
                    f"grade in a container where its files are read-only."
                )
            if progress is not None and not (stopper and stopper.requested):
                progress(grade)
            return grade

    read = [Submission.read(p, label) for p, label in zip(paths, _labels(paths), strict=True)]
    tasks = [asyncio.ensure_future(one(submission)) for submission in read]
    try:
        return list(await asyncio.gather(*tasks))
    except asyncio.CancelledError:  # gather cancelled each task once: let kernels shut down
        await asyncio.wait(tasks)
        raise
    except BaseException:  # one failed (GradingError): stop the others, once each
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        raise


def grade(
    lab: str,
    paths: Iterable[str | Path],
    *,
    checks: str | Path | None = None,
    files: str | Path | None = None,
    limits: Limits | None = None,
    jobs: int | None = None,
    progress: Callable[[Grade], None] | None = None,
) -> list[Grade]:
    """Grade notebooks on ``lab``'s checks (plus hidden ones in ``checks``); one Grade each.

    From Python, as the command does it::

        grades = grade("lab1", ["submissions/"], checks="hidden/")
        write_csv(grades, "grades.csv")
    """
    what = plan(lab, checks, files)
    paths = submissions(paths)
    stopper = Stopper()
    return run_interruptibly(
        lambda: agrade(what, paths, limits=limits, jobs=jobs, progress=progress, stopper=stopper),
        stopper.stop,
    )


def run_interruptibly(make: Callable[[], Coroutine[Any, Any, T]], stop: Callable[[], None]) -> T:
    """Run a coroutine on a loop in a worker thread, so that Ctrl-C still stops it.

    nbclient installs SIGINT handlers on a loop running in the main thread, and they
    only clean up one kernel; off the main thread it installs none. On Ctrl-C, ``stop``
    (a Stopper's) kills every kernel; once the coroutine has wound down,
    KeyboardInterrupt goes on.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        # SIGINT stays unblocked here: kernels started from this thread inherit its signal
        # mask, and a timed-out cell is interrupted with SIGINT.
        try:
            outcome["value"] = asyncio.run(make())
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="helixlab-grade", daemon=True)
    worker.start()
    try:
        worker.join()
    except KeyboardInterrupt:
        stop()
        worker.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
