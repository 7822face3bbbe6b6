"""The check runner: labs, their checks, and the ✓ / ✗ report."""

from __future__ import annotations

import difflib
import html
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .._extras import needs
from ..errors import CheckFailed, HelixError, describe
from ._logs import captured as _captured_logs
from ._logs import summary

with needs("lab", "helixlab.checks"):
    from IPython.core.error import UsageError

__all__ = ["LABS", "CheckReport", "CheckResult", "Missing", "Probe", "lab", "run_check"]


class Missing(Exception):
    """Raised by a check: ``hint`` says what is missing and where to look.

    ``title`` replaces the check's description in the report when what failed is not what
    the description says (the check of a running plugin, failed because the notebook's
    last definition was refused).
    """

    def __init__(self, hint: str, title: str = ""):
        super().__init__(hint)
        self.hint = hint
        self.title = title


@dataclass
class Probe:
    """What a check may look at: the kernel and the notebook's namespace.

    ``refused`` maps a plugin name to the notebook's last definition of it when the kernel
    refused that definition (a :class:`~helixlab.notebook._session.Refusal`): the checks
    try that class, and the first check says it was refused. ``record`` is False for a
    live panel's background runs, whose health checks must not add to the notebook's
    event log.

    ``failed`` maps a plugin name to the failed latest run of the cell that defined it (a
    :class:`~helixlab.notebook._session.Failure`): a check that looks at that plugin
    (``looked`` collects their names) is judged ✗, whatever the running version does.
    """

    kernel: Any
    namespace: Mapping[str, Any]
    refused: Mapping[str, Any] = field(default_factory=dict)
    record: bool = True
    definitions: Mapping[str, Any] = field(default_factory=dict)
    failed: Mapping[str, Any] = field(default_factory=dict)
    looked: set[str] = field(default_factory=set)

    def plugin_class(self, name: str) -> Any:
        """The class the checks try: the last definition, even when it was refused."""
        self.looked.add(name)
        refusal = self.refused.get(name)
        return refusal.cls if refusal is not None else self.kernel.plugin_class(name)

    def fresh_class(self, name: str, namespace: dict[str, Any] | None = None) -> Any:
        """The last definition of ``name``, from running its ``%%helix plugin`` cell again
        in ``namespace`` (by default a copy of the notebook's): module-level state such as
        a dict of buckets starts afresh for each private kernel, and running it twice in
        the same namespace is what re-running the cell does.

        Without a recorded cell (plugins defined otherwise), the class itself.
        """
        self.looked.add(name)
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
    plugins: tuple[str, ...] = ()  # the plugins the learner writes in this lab


LABS: dict[str, _Lab] = {}


def lab(
    name: str, title: str, plugins: tuple[str, ...] = ()
) -> Callable[[str], Callable[[Check], Check]]:
    """Register a lab; returns a decorator factory ``@check("what it verifies")``.

    ``plugins`` names the plugins the learner writes: when the latest run of the cell
    that defines one of them failed, every check of the lab is ✗ (see :func:`run_check`).
    """
    entry = LABS.setdefault(name, _Lab(name, title, plugins=tuple(plugins)))

    def check(description: str) -> Callable[[Check], Check]:
        def register(fn: Check) -> Check:
            entry.checks.append((description, fn))
            return fn

        return register

    return check


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. ``title`` (when set) says what failed instead of ``description``."""

    description: str
    passed: bool
    hint: str = ""
    title: str = ""

    @property
    def shown(self) -> str:
        """The line the learner reads: what failed, or what passed."""
        return self.title if self.title and not self.passed else self.description

    def __str__(self) -> str:
        if self.passed:
            return f"✓ {self.shown}"
        return f"✗ {self.shown}\n    hint: {self.hint}"


@dataclass
class CheckReport:
    """A lab's verdicts; ``notice`` is said first (the notebook's last edit did not run)."""

    lab: str
    title: str
    results: list[CheckResult]
    notice: str = ""

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def head(self) -> str:
        done = sum(r.passed for r in self.results)
        return f"{self.lab}: {self.title} — {done}/{len(self.results)} checks pass"

    def __str__(self) -> str:
        notice = [f"! {self.notice}"] if self.notice else []
        return "\n".join([self.head, *notice, *map(str, self.results)])

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
                f"{html.escape(r.shown)}{hint}</li>"
            )
        notice = (
            f'<div class="helix-check-notice" style="color:#b00020">{html.escape(self.notice)}'
            f"</div>"
            if self.notice
            else ""
        )
        return f"<b>{html.escape(self.head)}</b>{notice}<ul>{''.join(lines)}</ul>"


def _stale(report: CheckReport, stale: list[tuple[str, Any]]) -> CheckReport:
    """The report of a notebook whose last edit did not run: said first, every check ✗."""
    plugins = " and ".join(plugin for plugin, _ in stale)
    why = "; ".join(str(failure) for _, failure in stale)
    would = f"{sum(r.passed for r in report.results)}/{len(report.results)}"
    notice = (
        f"your last edit of {plugins} did not run: {why}. The version still running would "
        f"pass {would}, but it is not what your notebook defines: fix that cell and run it "
        f"again."
    )
    results = []
    for r in report.results:
        running = (
            "the version still running passes this check"
            if r.passed
            else f"the version still running fails it too: {r.hint}"
        )
        results.append(
            CheckResult(r.description, False, f"your last edit did not run (see above); {running}")
        )
    return CheckReport(report.lab, report.title, results, notice)


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
    failed: Mapping[str, Any] | None = None,
) -> CheckReport:
    """Run a lab's checks. ``strict`` (the solutions use it) raises CheckFailed on any ✗.

    ``cancelled`` is asked between checks: a live panel's run that a newer one superseded
    stops early (its report is dropped).

    A check judges what the learner handed in: when the latest run of the cell defining
    one of the lab's plugins failed (``failed``; the lab's ``plugins`` and those its checks
    looked at), the report says so first and every check is ✗, each hint saying how the
    version still running fares — what a fresh kernel running the notebook (the grader)
    would not have.
    """
    entry = lab_entry(name)
    probe = Probe(
        kernel,
        namespace,
        dict(refused or {}),
        record,
        dict(definitions or {}),
        dict(failed or {}),
    )
    results = []
    for description, check in entry.checks:
        if cancelled():
            break
        with _captured_logs() as logged:
            try:
                check(probe)
            except Missing as exc:
                result = CheckResult(description, False, exc.hint, exc.title)
            except HelixError as exc:
                result = CheckResult(description, False, describe(exc))
            except Exception as exc:
                result = CheckResult(description, False, f"it raised {describe(exc)}")
            else:
                result = CheckResult(description, True)
        if not result.passed and (said := summary(logged)):  # warnings and errors only
            result = replace(result, hint=f"{result.hint} {said}")
        results.append(result)
    report = CheckReport(name, entry.title, results)
    stale = [
        (plugin, probe.failed[plugin])
        for plugin in sorted(set(entry.plugins) | probe.looked)
        if plugin in probe.failed
    ]
    if stale:
        report = _stale(report, stale)
    if strict and not report.passed:
        raise CheckFailed(str(report))
    return report
