"""The grades as a CSV (one row per submission) and an HTML report (each ✗ with its hint)."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path

from ._results import Grade

__all__ = ["columns", "write_csv", "write_html"]

_FIXED = ("submission", "status", "score", "passed", "total")


def columns(grades: Sequence[Grade]) -> list[str]:
    """The CSV header: the fixed columns, one per check (in order), then errors and seconds."""
    checks: list[str] = []
    for grade in grades:
        for check in grade.checks:
            if check.column not in checks:
                checks.append(check.column)
    return [*_FIXED, *checks, "errors", "seconds"]


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
                "seconds": grade.seconds,
            }
            row.update({c.column: "pass" if c.passed else "fail" for c in grade.checks})
            writer.writerow(row)
    return target


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
.pass { color: #1a7f37; } .fail { color: #b00020; }
.hint, .error { font-size: 0.9em; color: #444; }
h2 { margin-top: 2em; }
"""


def write_html(grades: Sequence[Grade], path: str | Path, *, title: str = "Grades") -> Path:
    """A summary table, then per submission each check (✓ / ✗ with the hint) and its errors.

    Everything a submission produced is escaped: its text is shown, never run.
    """
    esc = html.escape
    rows = []
    for number, grade in enumerate(grades, start=1):
        rows.append(
            f'<tr><td><a href="#s{number}">{esc(grade.submission)}</a></td>'
            f"<td>{esc(grade.status)}</td><td>{grade.passed}/{grade.total}</td>"
            f"<td>{grade.score:g}%</td><td>{grade.seconds:g} s</td></tr>"
        )
    sections = []
    for number, grade in enumerate(grades, start=1):
        items = []
        for check in grade.checks:
            mark, kind = ("✓", "pass") if check.passed else ("✗", "fail")
            hint = (
                f'<div class="hint">hint: {esc(check.hint)}</div>'
                if not check.passed and check.hint
                else ""
            )
            items.append(f'<li><span class="{kind}">{mark}</span> {esc(check.column)}{hint}</li>')
        errors = "".join(f'<li class="error">{esc(error)}</li>' for error in grade.errors)
        sections.append(
            f'<h2 id="s{number}">{esc(grade.submission)} — {grade.passed}/{grade.total} '
            f"({esc(grade.status)})</h2><ul>{''.join(items)}</ul>"
            + (f"<h3>Errors</h3><ul>{errors}</ul>" if errors else "")
        )
    table = (
        "<table><tr><th>submission</th><th>status</th><th>checks</th><th>score</th>"
        f"<th>time</th></tr>{''.join(rows)}</table>"
    )
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>{table}"
        f"{''.join(sections)}</body></html>\n"
    )
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    return target
