"""The check runner: labs, their checks, and the ✓ / ✗ report."""

from __future__ import annotations

import difflib
import html
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._extras import needs
from ..errors import CheckFailed, HelixError, describe

with needs("lab", "helixlab.checks"):
    from IPython.core.error import UsageError

__all__ = ["LABS", "CheckReport", "CheckResult", "Missing", "Probe", "lab", "run_check"]


class Missing(Exception):
    """Raised by a check: ``hint`` says what is missing and where to look."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


@dataclass
class Probe:
    """What a check may look at: the kernel and the notebook's namespace.

    ``refused`` maps a plugin name to the notebook's last definition of it when the kernel
    refused that definition (a :class:`~helixlab.notebook._session.Refusal`): the checks
    try that class, and the first check says it was refused. ``record`` is False for a
    live panel's background runs, whose health checks must not add to the notebook's
    event log.
    """

    kernel: Any
    namespace: Mapping[str, Any]
    refused: Mapping[str, Any] = field(default_factory=dict)
    record: bool = True
    definitions: Mapping[str, Any] = field(default_factory=dict)

    def plugin_class(self, name: str) -> Any:
        """The class the checks try: the last definition, even when it was refused."""
        refusal = self.refused.get(name)
        return refusal.cls if refusal is not None else self.kernel.plugin_class(name)

    def fresh_class(self, name: str, namespace: dict[str, Any] | None = None) -> Any:
        """The last definition of ``name``, from running its ``%%helix plugin`` cell again
        in ``namespace`` (by default a copy of the notebook's): module-level state such as
        a dict of buckets starts afresh for each private kernel, and running it twice in
        the same namespace is what re-running the cell does.

        Without a recorded cell (plugins defined otherwise), the class itself.
        """
        definition = self.definitions.get(name)
        if definition is None:
            return self.plugin_class(name)
        code, class_names = definition
        scope = dict(self.namespace) if namespace is None else namespace
        try:
            exec(code, scope)
        except Exception:  # the cell itself fails now: the class the notebook has, then
            return self.plugin_class(name)
        for class_name in class_names:
            value = scope.get(class_name)
            if isinstance(value, type) and getattr(value, "name", None) == name:
                return value
        return self.plugin_class(name)

    def health(self) -> Any:
        return self.kernel.health() if self.record else self.kernel.look_health()

    def need(self, name: str, hint: str) -> Any:
        """A name the learner should have defined in the notebook."""
        if name not in self.namespace:
            raise Missing(hint)
        return self.namespace[name]


Check = Callable[[Probe], object]


@dataclass
class _Lab:
    name: str
    title: str
    checks: list[tuple[str, Check]] = field(default_factory=list)


LABS: dict[str, _Lab] = {}


def lab(name: str, title: str) -> Callable[[str], Callable[[Check], Check]]:
    """Register a lab; returns a decorator factory ``@check("what it verifies")``."""
    entry = LABS.setdefault(name, _Lab(name, title))

    def check(description: str) -> Callable[[Check], Check]:
        def register(fn: Check) -> Check:
            entry.checks.append((description, fn))
            return fn

        return register

    return check


@dataclass(frozen=True)
class CheckResult:
    description: str
    passed: bool
    hint: str = ""

    def __str__(self) -> str:
        if self.passed:
            return f"✓ {self.description}"
        return f"✗ {self.description}\n    hint: {self.hint}"


@dataclass
class CheckReport:
    lab: str
    title: str
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def __str__(self) -> str:
        done = sum(r.passed for r in self.results)
        head = f"{self.lab}: {self.title} — {done}/{len(self.results)} checks pass"
        return "\n".join([head, *map(str, self.results)])

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        lines = []
        for r in self.results:
            mark = "✓" if r.passed else "✗"
            color = "#1a7f37" if r.passed else "#b00020"
            hint = f"<br><small>hint: {html.escape(r.hint)}</small>" if r.hint else ""
            lines.append(
                f'<li style="list-style:none"><span style="color:{color}">{mark}</span> '
                f"{html.escape(r.description)}{hint}</li>"
            )
        head = html.escape(str(self).splitlines()[0])
        return f"<b>{head}</b><ul>{''.join(lines)}</ul>"


def _load_labs() -> None:
    from .. import checks

    for info in pkgutil.iter_modules(checks.__path__):
        if info.name.startswith("lab"):
            importlib.import_module(f"{checks.__name__}.{info.name}")


def lab_entry(name: str) -> _Lab:
    """The lab named ``name``; a UsageError (with the closest name) when there is none."""
    _load_labs()
    if name not in LABS:
        close = difflib.get_close_matches(name, sorted(LABS), n=1)
        guess = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"%helix check: no lab named {name!r}.{guess} "
            f"(labs: {', '.join(sorted(LABS)) or 'none'})"
        )
    return LABS[name]


def run_check(
    name: str,
    kernel: Any,
    namespace: Mapping[str, Any],
    *,
    strict: bool = False,
    refused: Mapping[str, Any] | None = None,
    record: bool = True,
    cancelled: Callable[[], bool] = lambda: False,
    definitions: Mapping[str, Any] | None = None,
) -> CheckReport:
    """Run a lab's checks. ``strict`` (the solutions use it) raises CheckFailed on any ✗.

    ``cancelled`` is asked between checks: a live panel's run that a newer one superseded
    stops early (its report is dropped).
    """
    entry = lab_entry(name)
    probe = Probe(kernel, namespace, dict(refused or {}), record, dict(definitions or {}))
    results = []
    for description, check in entry.checks:
        if cancelled():
            break
        try:
            check(probe)
        except Missing as exc:
            results.append(CheckResult(description, False, exc.hint))
        except HelixError as exc:
            results.append(CheckResult(description, False, describe(exc)))
        except Exception as exc:
            results.append(CheckResult(description, False, f"it raised {describe(exc)}"))
        else:
            results.append(CheckResult(description, True))
    report = CheckReport(name, entry.title, results)
    if strict and not report.passed:
        raise CheckFailed(str(report))
    return report
