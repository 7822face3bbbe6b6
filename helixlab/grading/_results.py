"""What grading produces: one Grade per submission, one CheckGrade per check, and the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CheckGrade", "Grade", "Limits", "Status"]


@dataclass(frozen=True)
class Limits:
    """Time limits, in seconds: per cell, for all of a notebook's cells, per check, to start;
    and the output kept, in characters: per cell, and for a whole submission."""

    cell: float = 60.0
    notebook: float = 300.0
    check: float = 60.0
    startup: float = 60.0
    cell_output: int = 10_000
    output: int = 200_000


class Status:
    """How a submission's run ended (the CSV's ``status`` column)."""

    OK = "ok"  # every cell ran without an error
    ERRORS = "errors"  # some cells raised (or timed out); the checks ran on what was there
    TIMEOUT = "timeout"  # the kernel stayed busy past a time limit and was stopped
    CRASHED = "crashed"  # the kernel process died
    TAMPERED = "tampered"  # helixlab was changed in the kernel, or a result was forged
    UNREADABLE = "unreadable"  # not a notebook
    FAILED = "failed"  # the grader could not run it (no kernel could start)


@dataclass(frozen=True)
class CheckGrade:
    description: str
    passed: bool
    hint: str = ""
    hidden: bool = False
    seconds: float = 0.0

    @property
    def column(self) -> str:
        """The CSV column: the description, ``hidden: `` first for an instructor's check."""
        return f"hidden: {self.description}" if self.hidden else self.description


@dataclass
class Grade:
    """One submission's grade: its checks, the errors its cells raised, the time it took."""

    submission: str
    status: str
    checks: list[CheckGrade]
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    flags: list[str] = field(default_factory=list)  # attempts on the grader's files
    notes: list[str] = field(default_factory=list)  # output truncated, processes killed
    sandbox: str = ""  # "bwrap" or "none"

    @property
    def passed(self) -> int:
        return sum(check.passed for check in self.checks)

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def score(self) -> float:
        """Percent of the checks passed, one decimal."""
        return round(100 * self.passed / self.total, 1) if self.total else 0.0

    def __str__(self) -> str:
        head = (
            f"{self.submission}: {self.passed}/{self.total} ({self.status}, {self.seconds:.1f} s)"
        )
        lines = [head]
        shown: dict[str, str] = {}
        for check in self.checks:
            mark = "✓" if check.passed else "✗"
            lines.append(f"  {mark} {check.column}")
            if check.passed or not check.hint:
                continue
            if check.hint in shown:  # one cause, told once
                lines.append(f"      hint: the same cause as “{shown[check.hint]}” above")
            else:
                shown[check.hint] = check.column
                lines.append(f"      hint: {check.hint}")
        lines.extend(f"  error: {error}" for error in self.errors)
        lines.extend(f"  flagged: {flag}" for flag in self.flags)
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
