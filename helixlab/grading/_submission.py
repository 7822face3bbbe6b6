"""One submission in its own kernel: the notebook's cells under time limits, then the checks.

The kernel is a fresh process started by nbclient in a temporary copy of the working
directory. The grader sends it, in order: a first cell (helixlab imported whole and
fingerprinted, before any submitted code), the submission's code cells, then one cell
per check. Each grader cell carries a fresh nonce and answers with one result bundle
(see ``_inkernel``); nothing else the kernel shows is believed. A fingerprint that
changed between the first cell and the checks means the submission changed helixlab:
its checks are failed, whatever they reported.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._extras import needs
from ..errors import describe
from ._attempts import Attempts
from ._isolation import Isolation
from ._kernel import Dead, GradingKernel, Ran, Stopper, Stuck
from ._results import CheckGrade, Grade, Limits, Status

__all__ = ["Plan", "Submission", "grade_submission"]

_SHOWN = 5  # changed helixlab names quoted in a hint


@dataclass(frozen=True)
class Plan:
    """What every submission is graded on: the lab, its checks, hidden ones, the files."""

    lab: str
    public: tuple[str, ...]
    hidden: tuple[str, ...]
    sources: Mapping[str, str]
    files: Path | None = None
    checks_dir: Path | None = None  # where the hidden checks were read (kept from kernels)

    @property
    def descriptions(self) -> list[tuple[str, bool]]:
        return [(d, False) for d in self.public] + [(d, True) for d in self.hidden]


def _changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What differs between two fingerprints: replaced or removed names, and names added."""
    changed = [key for key, value in before.items() if after.get(key) != value]
    owners = {key.partition(":")[0] for key in before}
    added = [
        key
        for key in after
        if key not in before and not key.startswith("LABS[") and key.partition(":")[0] in owners
    ]
    return changed + added


def _shown(names: list[str]) -> str:
    names = [name.replace(":", ".", 1) for name in names]
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


class _Grading:
    """The state of one submission's grading, cell by cell."""

    def __init__(self, plan: Plan, limits: Limits, kernel: GradingKernel):
        self.plan, self.limits, self.kernel = plan, limits, kernel
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.status = Status.OK
        self.checks: list[CheckGrade | None] = [None] * len(plan.descriptions)
        self.fingerprint: Mapping[str, str] = {}

    def worse(self, status: str) -> None:
        order = [Status.OK, Status.ERRORS, Status.TIMEOUT, Status.CRASHED, Status.TAMPERED,
                 Status.FAILED]  # fmt: skip
        if order.index(status) > order.index(self.status):
            self.status = status

    def fail_rest(self, hint: str) -> None:
        """Every check without a result yet fails with ``hint``."""
        for index, (description, hidden) in enumerate(self.plan.descriptions):
            if self.checks[index] is None:
                self.checks[index] = CheckGrade(description, False, hint, hidden)

    async def before(self) -> bool:
        ran, bundle = await self.kernel.grader_cell(
            "before_notebook", self.limits.startup, self.limits.cell_output, self.limits.output
        )
        if bundle is None:
            self.status = Status.FAILED
            why = ran.error() or ("timed out" if ran.timed_out else "no result")
            self.errors.append(f"helixlab could not be imported in the kernel: {why}")
            self.fail_rest("not run: helixlab could not be imported in the submission's kernel.")
            return False
        self.fingerprint = bundle["prints"]
        return True

    async def notebook(self, cells: list[tuple[int, str]], deadline: float) -> None:
        """Run ``cells`` in order; by ``deadline`` (monotonic), the rest are not run."""
        for position, (number, source) in enumerate(cells):
            left = deadline - time.monotonic()
            if left <= 0:
                rest = ", ".join(str(n) for n, _ in cells[position:])
                self.errors.append(
                    f"the notebook's time limit ({self.limits.notebook:g} s) ran out before "
                    f"cell {number}; not run: cell(s) {rest}"
                )
                self.worse(Status.TIMEOUT)
                return
            limit = min(self.limits.cell, left)
            try:
                ran = await self.kernel.run(source, limit)
            except Dead:
                self.died(f"cell {number}")
                raise
            if ran.timed_out:
                why = (
                    f"did not finish within {limit:g} s"
                    if limit == self.limits.cell
                    else f"the notebook's time limit ({self.limits.notebook:g} s) ran out"
                )
                self.errors.append(f"cell {number}: {why}; interrupted")
                self.truncated(number, ran)
                await self.recover(f"cell {number}")
                continue
            self.truncated(number, ran)
            if (error := ran.error()) is not None:
                self.errors.append(f"cell {number}: {error}")
                self.worse(Status.ERRORS)

    def truncated(self, number: int, ran: Ran) -> None:
        if ran.truncated:
            self.notes.append(
                f"cell {number}: output truncated (the grader keeps "
                f"{self.limits.cell_output:,} characters a cell, {self.limits.output:,} in all)"
            )

    def died(self, where: str) -> None:
        """The kernel died in ``where`` (a cell, a check): what has no result yet fails."""
        self.errors.append(f"{where}: the kernel died{self.kernel.exit_status()}")
        self.worse(Status.CRASHED)
        self.fail_rest(f"not run: the kernel died in {where}.")

    async def recover(self, where: str) -> None:
        """After ``where`` timed out: go on if the kernel answers, else raise Stuck."""
        self.worse(Status.TIMEOUT)
        try:
            await self.kernel.responsive()
        except Stuck:
            self.errors.append(f"the kernel stayed busy after {where} was interrupted; stopped")
            self.fail_rest(f"not run: the kernel stayed busy after {where} was interrupted.")
            raise

    def tampered(self, prints: Mapping[str, str], when: str) -> bool:
        """Whether helixlab differs from its first fingerprint; if so, no check counts."""
        changes = _changes(self.fingerprint, prints)
        if changes:
            self.distrust(f"the submission changed helixlab ({_shown(changes)})", when)
        return bool(changes)

    def distrust(self, what: str, when: str) -> None:
        """Fail every check, whatever it reported: ``what`` happened ``when``."""
        self.errors.append(f"{when}, {what}")
        self.worse(Status.TAMPERED)
        self.checks = [None] * len(self.checks)
        self.fail_rest(f"not counted: {when}, {what}, so no result from its kernel can be trusted.")

    async def run_checks(self) -> None:
        plan, limit = self.plan, self.limits.check
        ran, setup = await self.kernel.grader_cell("before_checks", limit, plan.lab, plan.sources)
        if setup is None:
            self.worse(Status.TAMPERED if self.kernel.forged else Status.ERRORS)
            self.errors.append(f"the checks could not start: {ran.error() or 'no result'}")
            self.fail_rest(f"not run: the checks could not start ({ran.error() or 'no result'}).")
            return
        if self.tampered(setup["prints"], "before the checks"):
            return
        if (tuple(setup["public"]), tuple(setup["hidden"])) != (plan.public, plan.hidden):
            self.distrust("the submission changed the lab's list of checks", "before the checks")
            return
        for index, (description, hidden) in enumerate(plan.descriptions):
            try:
                ran, result = await self.kernel.grader_cell(
                    "run_one", limit, plan.lab, index, plan.sources
                )
            except Dead:
                self.checks[index] = CheckGrade(
                    description, False, "the kernel died during this check.", hidden
                )
                self.died(f"check {index + 1}")
                raise
            self.checks[index] = self._result(index, description, hidden, ran, result)
            if ran.timed_out:
                await self.recover(f"check {index + 1}")
        ran, after = await self.kernel.grader_cell("after_checks", limit)
        when = "while the checks ran"
        if self.kernel.forged:
            self.distrust(
                f"the kernel showed {self.kernel.forged} result(s) the grader did not ask for", when
            )
        elif after is None:
            self.distrust(
                f"helixlab could not be fingerprinted again ({ran.error() or 'no result'})", when
            )
        else:
            self.tampered(after["prints"], when)

    def _result(
        self, index: int, description: str, hidden: bool, ran: Ran, result: Any
    ) -> CheckGrade:
        seconds = round(ran.seconds, 3)
        if result is not None and (result.get("index"), result.get("description")) == (
            index,
            description,
        ):
            passed = result.get("passed") is True
            return CheckGrade(description, passed, str(result.get("hint", "")), hidden, seconds)
        if ran.timed_out:
            hint = f"did not finish within {self.limits.check:g} s; the check was interrupted."
            self.errors.append(f"check {index + 1}: did not finish within {self.limits.check:g} s")
        else:
            why = ran.error() or "no result"
            hint = f"the check could not report a result ({why})."
            self.errors.append(f"check {index + 1}: {why}")
            self.worse(Status.ERRORS)
        return CheckGrade(description, False, hint, hidden, seconds)


#: What ipykernel writes to its log as it starts: never a dead kernel's last words.
_BANNER = (
    "without encryption",
    "--existing",
    "To connect another client",
    "NOTE: When using",
    "To exit, you will have",
    "from a client, or using",
    "To read more about this",
)


def _last_words(log: Path, tail: int = 16_384) -> list[str]:
    """The last line a dead kernel wrote to its stderr (a fatal error's message), if any.

    Only the log's last ``tail`` bytes are read: a kernel may have written gigabytes.
    """
    with log.open("rb") as file:
        file.seek(max(0, file.seek(0, 2) - tail))
        text = file.read().decode(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not any(part in line for part in _BANNER)]
    return [f"the kernel's last words: {lines[-1].strip()[:300]}"] if lines else []


def _code_cells(nb: Any) -> list[tuple[int, str]]:
    """``(cell number, source)`` of each code cell; numbers count every cell, from 1."""
    return [
        (number, cell.source)
        for number, cell in enumerate(nb.cells, start=1)
        if cell.cell_type == "code"
    ]


def _around_check(cells: list[tuple[int, str]], lab: str) -> tuple[list, list]:
    """The cells before the last ``%helix check LAB`` cell, and those after it.

    The checks run where the lab runs them, in that cell's place: the cells after it (a
    lab's clean-up, which stops its servers) run once the checks are done. Without such a
    cell, the checks run after the last cell.
    """
    pattern = re.compile(rf"^\s*%helix\s+check\s+{re.escape(lab)}\b", re.MULTILINE)
    found = [i for i, (_, source) in enumerate(cells) if pattern.search(source)]
    if not found:
        return cells, []
    return cells[: found[-1]], cells[found[-1] + 1 :]


def _prepare(workdir: Path, plan: Plan, nb: Any, name: str) -> None:
    if plan.files is not None:
        shutil.copytree(plan.files, workdir, symlinks=True)
    else:
        workdir.mkdir()
    with needs("grade", "helixlab grade"):
        import nbformat

    nbformat.write(nb, workdir / name)


@dataclass(frozen=True)
class Submission:
    """A submitted notebook, read before any kernel starts (a submission may delete files)."""

    label: str
    name: str
    notebook: Any = None
    problem: str = ""

    @classmethod
    def read(cls, path: Path, label: str) -> Submission:
        with needs("grade", "helixlab grade"):
            import nbformat

        try:
            return cls(label, path.name, nbformat.read(path, as_version=4))
        except Exception as exc:
            return cls(label, path.name, problem=f"not a notebook: {describe(exc)}")


async def grade_submission(
    submission: Submission,
    plan: Plan,
    limits: Limits,
    stopper: Stopper | None = None,
    isolation: Isolation | None = None,
    attempts: Attempts | None = None,
) -> Grade:
    """Grade one notebook; whatever it does, this returns a Grade (it never raises for it)."""
    stopper = stopper or Stopper()
    isolation = isolation or Isolation(False, "none")
    started = time.monotonic()
    label, nb = submission.label, submission.notebook
    if nb is None:
        unread = [CheckGrade(d, False, "not run: the file is not a notebook.", h)
                  for d, h in plan.descriptions]  # fmt: skip
        return Grade(label, Status.UNREADABLE, unread, [submission.problem],
                     sandbox=isolation.label)  # fmt: skip
    flags: list[str] = []
    with tempfile.TemporaryDirectory(prefix="helixlab-grade-", ignore_cleanup_errors=True) as tmp:
        _prepare(Path(tmp) / "work", plan, nb, submission.name)
        place = isolation.place(Path(tmp), secrets.token_hex(16))
        kernel = GradingKernel(place, limits)
        grading = _Grading(plan, limits, kernel)
        log = (Path(tmp) / "kernel.log").open("wb")  # the kernel's own stdout and stderr
        if attempts is not None:
            attempts.begin(label, place)
        try:
            async with kernel.client.async_setup_kernel(
                stdout=log, stderr=log, env=dict(place.env), cleanup_kc=True
            ):
                kernel.started()
                stopper.track(kernel)
                if await grading.before():
                    deadline = time.monotonic() + limits.notebook
                    before, after = _around_check(_code_cells(nb), plan.lab)
                    await grading.notebook(before, deadline)
                    await grading.run_checks()
                    await grading.notebook(after, deadline)
        except (Dead, Stuck):
            pass
        except Exception as exc:  # the kernel could not start, or nbclient broke down
            grading.worse(Status.ERRORS if grading.fingerprint else Status.FAILED)
            grading.errors.append(f"grading stopped: {describe(exc)}")
            grading.fail_rest(f"not run: grading stopped ({describe(exc)}).")
        finally:
            stopper.forget(kernel)
            atexit.unregister(kernel.client._cleanup_kernel)  # left registered by a failed start
            log.close()
            left = kernel.reap()  # however it ended, nothing it started keeps running
            if attempts is not None:
                flags = attempts.end(label)
        if left:
            grading.notes.append(
                f"stopped {len(left)} process(es) the kernel had started and left running"
            )
        if grading.status in (Status.CRASHED, Status.FAILED):  # died, or never started
            grading.errors.extend(_last_words(Path(tmp) / "kernel.log"))
    checks = [check for check in grading.checks if check is not None]
    errors = [error.replace(f"{place.work}{os.sep}", "") for error in grading.errors]
    return Grade(label, grading.status, checks, errors,
                 round(time.monotonic() - started, 2), flags, grading.notes,
                 isolation.label)  # fmt: skip
