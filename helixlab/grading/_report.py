"""The grades as CSVs (one row per submission; a summary per check and score) and HTML.

A ``cell N`` in the errors counts every cell of the notebook from 1, Markdown cells
included: the N-th cell from the top, as the file has them.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path

from ._results import Grade

__all__ = ["columns", "summary", "write_csv", "write_html", "write_summary_csv"]

#: What the report says a ``cell N`` is.
CELLS = "cell N is the N-th cell of the notebook from the top, Markdown cells included"

_FIXED = ("submission", "status", "score", "passed", "total")


def columns(grades: Sequence[Grade]) -> list[str]:
    """The CSV header: the fixed columns, one per check (in order), then errors and seconds."""
    checks: list[str] = []
    for grade in grades:
        for check in grade.checks:
            if check.column not in checks:
                checks.append(check.column)
    return [*_FIXED, *checks, "errors", "flags", "notes", "seconds"]


def write_csv(grades: Sequence[Grade], path: str | Path) -> Path:
    """One row per submission; a check's cell is ``pass`` or ``fail``."""
    header = columns(grades)
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        for grade in grades:
            row: dict[str, object] = {
                "submission": grade.submission,
                "status": grade.status,
                "score": grade.score,
                "passed": grade.passed,
                "total": grade.total,
                "errors": "; ".join(grade.errors),
                "flags": "; ".join(grade.flags),
                "notes": "; ".join(grade.notes),
                "seconds": grade.seconds,
            }
            row.update({c.column: "pass" if c.passed else "fail" for c in grade.checks})
            writer.writerow(row)
    return target


def summary(grades: Sequence[Grade]) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]]]:
    """Per check ``(column, submissions that passed it, submissions)``, and the scores'
    distribution ``(passed/total, submissions)``, best first."""
    graded = [grade for grade in grades if grade.total]
    checks: dict[str, int] = {}
    for grade in graded:
        for check in grade.checks:
            checks[check.column] = checks.get(check.column, 0) + check.passed
    scores: dict[tuple[int, int], int] = {}
    for grade in graded:
        key = (grade.passed, grade.total)
        scores[key] = scores.get(key, 0) + 1
    order = sorted(scores, key=lambda key: (-key[0] / key[1], -key[1]))
    return (
        [(column, passed, len(graded)) for column, passed in checks.items()],
        [(f"{p}/{t}", scores[(p, t)]) for p, t in order],
    )


def write_summary_csv(grades: Sequence[Grade], path: str | Path) -> Path:
    """What an instructor asks first: per check how many passed it; how the scores spread.

    Columns ``kind, name, submissions, of, percent``: a ``check`` row per check (the
    submissions that passed it), then a ``score`` row per score reached (``5/7``).
    """
    checks, scores = summary(grades)
    total = sum(count for _, count in scores)
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["kind", "name", "submissions", "of", "percent"])
        for column, passed, of in checks:
            writer.writerow(["check", column, passed, of, _percent(passed, of)])
        for score, count in scores:
            writer.writerow(["score", score, count, total, _percent(count, total)])
    return target


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _hints(grade: Grade) -> list[str | None]:
    """Each check's hint as shown: the text the first time, then where it was shown."""
    shown: dict[str, str] = {}
    out: list[str | None] = []
    for check in grade.checks:
        if check.passed or not check.hint:
            out.append(None)
        elif check.hint in shown:
            out.append(f"the same cause as “{shown[check.hint]}” above")
        else:
            shown[check.hint] = check.column
            out.append(check.hint)
    return out


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
.pass { color: #1a7f37; } .fail { color: #b00020; }
.hint, .error, .note { font-size: 0.9em; color: #444; }
.flag { color: #b00020; font-weight: bold; }
.bar { background: #1a7f37; display: inline-block; height: 0.8em; }
h2 { margin-top: 2em; }
"""


def write_html(
    grades: Sequence[Grade], path: str | Path, *, title: str = "Grades", sandbox: str = ""
) -> Path:
    """The distribution of scores and each check's pass count, a table of submissions,
    then per submission each check (✓ / ✗ with its hint, once per cause), errors, flags.

    Everything a submission produced is escaped: its text is shown, never run.
    """
    esc = html.escape
    checks, scores = summary(grades)
    how = [f"<p>{esc(_plural(len(grades), 'submission'))}; {esc(CELLS)}."]
    if sandbox:
        how.append(f" Sandbox: {esc(sandbox)}.")
    flagged = sum(bool(grade.flags) for grade in grades)
    if flagged:
        how.append(f' <span class="flag">{esc(_plural(flagged, "submission"))} flagged.</span>')
    how.append("</p>")
    spread = "".join(
        f"<tr><td>{esc(score)}</td><td>{count}</td>"
        f'<td><span class="bar" style="width: {count * 200 // max(1, len(grades))}px">'
        "</span></td></tr>"
        for score, count in scores
    )
    passing = "".join(
        f"<tr><td>{esc(column)}</td><td>{passed}/{of}</td><td>{_percent(passed, of):g}%</td></tr>"
        for column, passed, of in checks
    )
    top = (
        "<h2>Scores</h2><table><tr><th>checks passed</th><th>submissions</th><th></th></tr>"
        f"{spread}</table><h2>Checks</h2><table><tr><th>check</th><th>passed by</th>"
        f"<th>share</th></tr>{passing}</table>"
    )
    rows = []
    for number, grade in enumerate(grades, start=1):
        flag = ' <span class="flag">⚑ flagged</span>' if grade.flags else ""
        rows.append(
            f'<tr><td><a href="#s{number}">{esc(grade.submission)}</a>{flag}</td>'
            f"<td>{esc(grade.status)}</td><td>{grade.passed}/{grade.total}</td>"
            f"<td>{grade.score:g}%</td><td>{grade.seconds:g} s</td></tr>"
        )
    sections = []
    for number, grade in enumerate(grades, start=1):
        items = []
        for check, hint in zip(grade.checks, _hints(grade), strict=True):
            mark, kind = ("✓", "pass") if check.passed else ("✗", "fail")
            shown = f'<div class="hint">hint: {esc(hint)}</div>' if hint else ""
            items.append(f'<li><span class="{kind}">{mark}</span> {esc(check.column)}{shown}</li>')
        parts = [
            f'<h2 id="s{number}">{esc(grade.submission)} — {grade.passed}/{grade.total} '
            f"({esc(grade.status)})</h2><ul>{''.join(items)}</ul>"
        ]
        for heading, kind, lines in (("Flagged", "flag", grade.flags),
                                     ("Errors", "error", grade.errors),
                                     ("Notes", "note", grade.notes)):  # fmt: skip
            if lines:
                shown = "".join(f'<li class="{kind}">{esc(line)}</li>' for line in lines)
                parts.append(f"<h3>{heading}</h3><ul>{shown}</ul>")
        sections.append("".join(parts))
    table = (
        "<h2>Submissions</h2><table><tr><th>submission</th><th>status</th><th>checks</th>"
        f"<th>score</th><th>time</th></tr>{''.join(rows)}</table>"
    )
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>{''.join(how)}{top}{table}"
        f"{''.join(sections)}</body></html>\n"
    )
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    return target
