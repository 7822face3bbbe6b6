"""Grading a class: every submission in its own kernel, several at once, each graded alone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._extras import require
from ..errors import GradingError
from . import _hidden, _integrity
from ._attempts import Attempts
from ._isolation import Cover, Isolation, prepare
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
    where = Path(checks).resolve() if checks is not None else None
    return Plan(lab, tuple(public), tuple(hidden), sources, folder, where)


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
    """Each submission's name in the report: its path relative to the submissions' folder.

    That is the deepest folder holding them all (for one notebook, its name alone), so that
    a report shows ``alice/lab1.ipynb``, never ``/home/me/course/2026/submissions/...``.
    """
    resolved = [path.resolve() for path in paths]
    if len(resolved) == 1:
        return [resolved[0].name]
    common = Path(os.path.commonpath([str(path.parent) for path in resolved]))
    return [str(path.relative_to(common)) for path in resolved]


def covers(what: Plan, paths: Sequence[Path], reports: Sequence[Path]) -> list[Cover]:
    """What kernels must not reach: the hidden checks, the reports, the submissions."""
    found = []
    if what.checks_dir is not None:
        names = tuple(sorted(p.name for p in what.checks_dir.iterdir() if p.is_file()))
        found.append(Cover(what.checks_dir, names, "read the hidden checks"))
    by_folder: dict[Path, list[str]] = {}
    for report in reports:
        by_folder.setdefault(report.resolve().parent, []).append(report.name)
    for folder, names in by_folder.items():
        found.append(Cover(folder, tuple(names), "wrote to the grader's reports", writable=True))
    folders = sorted({path.resolve().parent for path in paths} - set(by_folder))
    found += [Cover(folder, (), "looked into the submissions' folder") for folder in folders]
    return found


async def agrade(
    what: Plan,
    paths: Sequence[Path],
    *,
    limits: Limits | None = None,
    jobs: int | None = None,
    progress: Callable[[Grade], None] | None = None,
    stopper: Stopper | None = None,
    sandbox: str = "auto",
    reports: Sequence[Path] = (),
    isolation: Isolation | None = None,
) -> list[Grade]:
    """Grade ``paths`` against ``what``, ``jobs`` at a time (default: the cores); in order.

    ``sandbox`` (``auto``, ``on``, ``off``): each kernel under bubblewrap (see
    ``_isolation``); ``reports``: the files the grader writes afterwards, kept from kernels
    and watched. After each submission, helixlab's own files are compared with their
    digests from the start: if a submission changed its sources, nothing graded afterwards
    could be trusted, and grading stops with GradingError; bytecode a submission wrote
    into its ``__pycache__`` (which no kernel reads) is removed and the submission flagged.
    """
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="helixlab-grading-") as scratch:
        if isolation is None:
            planned = covers(what, paths, reports)
            isolation = await asyncio.to_thread(prepare, sandbox, planned, Path(scratch))
        attempts = Attempts(isolation.covered, isolation.sandbox)
        writes = sys.dont_write_bytecode  # the grader's own imports write no bytecode now
        sys.dont_write_bytecode = True
        try:
            return await _grade_all(what, paths, limits, jobs, progress, stopper, isolation,
                                    attempts)  # fmt: skip
        finally:
            sys.dont_write_bytecode = writes
            attempts.close()


async def _grade_all(
    what: Plan,
    paths: Sequence[Path],
    limits: Limits,
    jobs: int | None,
    progress: Callable[[Grade], None] | None,
    stopper: Stopper | None,
    isolation: Isolation,
    attempts: Attempts,
) -> list[Grade]:
    digests = _integrity.package_digests()
    gate = asyncio.Semaphore(max(1, jobs or os.cpu_count() or 1))
    running: set[str] = set()

    async def pump() -> None:  # blame each event on the submissions running when it came
        while True:
            attempts.pump()
            await asyncio.sleep(0.2)

    async def one(submission: Submission) -> Grade:
        label = submission.label
        async with gate:
            if stopper is not None and stopper.requested:  # Ctrl-C: start no more kernels
                return Grade(label, Status.FAILED, [], ["not graded: interrupted"])
            running.add(label)
            try:
                grade = await grade_submission(
                    submission, what, limits, stopper, isolation, attempts
                )
            finally:
                running.discard(label)
            planted = _integrity.remove_bytecode(digests)
            if planted:
                grade.flags.append(
                    f"wrote into helixlab's files ({', '.join(planted)}; removed, and read by "
                    f"no kernel){_with(running)}"
                )
            changed = _integrity.changed_files(digests)
            if changed:
                raise GradingError(
                    f"helixlab's files changed while grading {label!r}{_with(running)}: "
                    f"{', '.join(changed)}; no grade can be trusted. Reinstall helixlab, and "
                    f"grade in a container where its files are read-only."
                )
            if progress is not None and not (stopper and stopper.requested):
                progress(grade)
            return grade

    read = [Submission.read(p, label) for p, label in zip(paths, _labels(paths), strict=True)]
    tasks = [asyncio.ensure_future(one(submission)) for submission in read]
    pumping = asyncio.ensure_future(pump())
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
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


def _with(running: set[str]) -> str:
    return f" (graded at the same time as {', '.join(sorted(running))})" if running else ""


def grade(
    lab: str,
    paths: Iterable[str | Path],
    *,
    checks: str | Path | None = None,
    files: str | Path | None = None,
    limits: Limits | None = None,
    jobs: int | None = None,
    progress: Callable[[Grade], None] | None = None,
    sandbox: str = "auto",
) -> list[Grade]:
    """Grade notebooks on ``lab``'s checks (plus hidden ones in ``checks``); one Grade each.

    From Python, as the command does it::

        grades = grade("lab1", ["submissions/"], checks="hidden/")
        write_csv(grades, "grades.csv")
    """
    what = plan(lab, checks, files)
    paths = submissions(paths)
    stopper = Stopper()
    options: dict[str, Any] = {"limits": limits, "jobs": jobs, "progress": progress}
    return run_interruptibly(
        lambda: agrade(what, paths, stopper=stopper, sandbox=sandbox, **options), stopper.stop
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
