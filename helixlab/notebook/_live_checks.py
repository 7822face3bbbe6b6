"""``%helix check LAB --live``: a panel that re-runs a lab's checks as the learner edits.

What Rustlings' watch mode does for its exercises: after every ``%%helix plugin`` cell (run,
re-run, refused or not) and every reload or configure of the notebook's kernel, the
lab's checks run again on a worker thread, once the cell has finished, and the panel
updates in place: ✓ / ✗ per check, the hint of the first ✗, and what changed since the
last run. A run that a newer one supersedes stops at its next check and is dropped.

The panel only changes widget values (sent over comms), never prints, and its background
runs keep out of the notebook's other cells: their health checks are not recorded in the
kernel's event log (``record=False``), and what the learner's plugins print from the
checks' private kernels while a run is in progress is dropped, not shown in whichever
cell happens to be running.
"""

from __future__ import annotations

import contextlib
import html
import threading
from typing import Any

from .._extras import needs
from ..checks._core import CheckReport, lab_entry, run_check
from ..kernel import PluginEvent
from ._quiet import muffled_threads

with needs("lab", "the live check panel"):
    import ipywidgets as w

__all__ = ["CheckPanel"]

#: Kernel events after which the checks look again (not their own health looks).
_QUIET = frozenset({"health_changed"})


class CheckPanel(w.VBox):
    """The live check panel of one lab in one notebook."""

    def __init__(self, session: Any, lab: str, **kwargs: Any):
        self.lab = lab_entry(lab).name  # a UsageError for an unknown lab, as without --live
        self._lock = threading.Lock()
        self.session = session
        self.heading = w.HTML()
        self.heading.add_class("helix-check-heading")
        self.checks = w.HTML()
        self.checks.add_class("helix-check-list")
        self.hint = w.HTML()
        self.hint.add_class("helix-check-hint")
        self.changes = w.HTML()
        self.changes.add_class("helix-check-changes")
        super().__init__([self.heading, self.checks, self.hint, self.changes], **kwargs)
        self.add_class("helix-check-panel")
        self.report: CheckReport | None = None
        self.runs = 0  # finished, shown runs
        self.dropped = 0  # runs superseded by a newer one before they finished
        self._wanted = 0  # generation of the newest run asked for
        self._dirty = False
        self._worker: threading.Thread | None = None
        self.idle = threading.Event()
        self.idle.set()
        self._closed = False
        self._kernel: Any = None
        self._unsubscribe: Any = None
        self._after = "when the panel opened"
        self._follow_kernel()
        session.plugin_cell_listeners.append(self._changed)
        session.shell.events.register("post_run_cell", self._post_run_cell)
        self._show_heading("checking…")
        self.start()

    # -- when to run ------------------------------------------------------------------

    def _follow_kernel(self) -> None:
        """Listen to the session's kernel (a new one after ``%helix reset``)."""
        kernel = self.session.kernel
        if kernel is self._kernel:
            return
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._kernel = kernel
        self._unsubscribe = kernel.subscribe(self._on_event)

    def _on_event(self, event: PluginEvent) -> None:
        if event.kind not in _QUIET:
            self._changed()

    def _changed(self) -> None:
        self._dirty = True

    def _post_run_cell(self, _result: Any = None) -> None:
        """After a cell: run again if a plugin cell ran or the kernel changed meanwhile."""
        self._follow_kernel()
        if self._dirty:
            self._dirty = False
            self._after = f"after {self.session.cell_label}"  # the cell that changed something
            self.start()

    def start(self) -> None:
        """Ask for a run; a run in progress is superseded (it stops at its next check)."""
        with self._lock:
            if self._closed:
                return
            self._wanted += 1
            self.idle.clear()
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._drain, name="helixlab-live-checks", daemon=True
                )
                self._worker.start()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until the newest run asked for has been shown."""
        return self.idle.wait(timeout)

    # -- the worker -------------------------------------------------------------------

    def _drain(self) -> None:
        done = 0
        while True:
            with self._lock:
                if done == self._wanted or self._closed:
                    self._worker = None
                    self.idle.set()
                    return
                generation = self._wanted
            self._show_heading("checking…")
            report = self._run(generation)
            with self._lock:
                superseded = generation != self._wanted
            if superseded or report is None:
                self.dropped += 1
            else:
                self._show(report)
            done = generation

    def _run(self, generation: int) -> CheckReport | None:
        session = self.session
        try:
            with muffled_threads():
                return run_check(
                    self.lab,
                    session.kernel,
                    session.shell.user_ns,
                    refused=dict(session.refused),
                    definitions=dict(session.definitions),
                    failed=dict(session.failed),
                    record=False,
                    cancelled=lambda: generation != self._wanted or self._closed,
                )
        except Exception as exc:  # a check run that fails is shown, never raised here
            self.hint.value = _escape(f"the checks could not run: {exc}")
            return None

    # -- what the panel shows ----------------------------------------------------------

    def _show_heading(self, status: str) -> None:
        report = self.report
        score = ""
        if report is not None:
            done = sum(r.passed for r in report.results)
            score = f" — {done}/{len(report.results)} checks pass"
        self.heading.value = (
            f"<b>{_escape(self.lab)} (live){score}</b> "
            f'<span class="helix-check-status" style="color:#666">{_escape(status)}</span>'
        )

    def _show(self, report: CheckReport) -> None:
        before, self.report = self.report, report
        self.runs += 1
        rows = []
        for result in report.results:
            passed = ("✓", "pass", "#1a7f37")
            mark, css, color = passed if result.passed else ("✗", "fail", "#b00020")
            rows.append(
                f'<div class="helix-check helix-check-{css}"><span style="color:{color}">'
                f"{mark}</span> {_escape(result.shown)}</div>"
            )
        self.checks.value = "".join(rows)
        failed = next((r for r in report.results if not r.passed), None)
        if report.notice:  # the notebook's last edit did not run: that first
            self.hint.value = f"<small><b>{_escape(report.notice)}</b></small>"
        elif failed is not None:
            self.hint.value = f"<small><b>first ✗:</b> {_escape(failed.hint)}</small>"
        else:
            self.hint.value = "<small>every check passes</small>"
        self.changes.value = f"<small>{_escape(changes(before, report))}</small>"
        self._show_heading(f"checked {self._after}")

    def close(self) -> None:
        if not hasattr(self, "session"):  # __init__ refused the lab before building the panel
            super().close()
            return
        with self._lock:
            self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._changed in self.session.plugin_cell_listeners:
            self.session.plugin_cell_listeners.remove(self._changed)
        with contextlib.suppress(ValueError):
            self.session.shell.events.unregister("post_run_cell", self._post_run_cell)
        super().close()

    def __repr__(self) -> str:
        return f"CheckPanel({self.lab}, live: re-runs the checks after each plugin cell)"


def changes(before: CheckReport | None, after: CheckReport) -> str:
    """What changed between two runs, in words: which checks now pass, which now fail."""
    if before is None:
        return "first run"
    was = {r.description: r.passed for r in before.results}
    fixed = [r.description for r in after.results if r.passed and was.get(r.description) is False]
    broke = [r.description for r in after.results if not r.passed and was.get(r.description)]
    parts = [f"now ✓: {d}" for d in fixed] + [f"now ✗: {d}" for d in broke]
    return "; ".join(parts) if parts else "no change since the last run"


def _escape(text: str) -> str:
    return html.escape(text)
