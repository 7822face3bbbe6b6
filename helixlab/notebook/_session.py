"""One notebook's helixlab session: its kernel, watcher, server and IPython hooks.

``%load_ext helixlab`` creates it; ``%unload_ext helixlab`` closes it.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import re
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import IPython

from ..errors import HelixError, PluginNotFoundError, ReloadInterrupted
from ..kernel import Kernel
from ._quiet import foreground

__all__ = ["Failure", "Refusal", "Session"]

# Frames from these directories are machinery, not the user's code: hidden in tracebacks.
_HIDDEN = (
    str(Path(__file__).resolve().parent.parent),  # helixlab
    sysconfig.get_paths()["stdlib"],
    str(Path(IPython.__file__).resolve().parent),
)


@dataclass(frozen=True)
class Failure:
    """The latest run of the ``%%helix plugin`` cell that defined a plugin did not define it.

    A syntax error, an exception while the cell ran, or a cell that now defines another
    name: the kernel still runs the version before, which is not what the notebook defines.
    """

    where: str  # "cell [7]"
    error: str  # "SyntaxError: invalid syntax"
    line: int | None = None  # the cell's line (``%%helix plugin`` is line 1)

    def __str__(self) -> str:
        at = f"{self.where}, line {self.line}" if self.line else self.where
        return f"{self.error} ({at})"


@dataclass(frozen=True)
class Refusal:
    """A plugin class a ``%%helix plugin`` cell defined and the kernel refused, and why."""

    cls: type
    where: str
    message: str


class Session:
    """The kernel a notebook talks to (bound to ``helix``) and what hangs off it."""

    def __init__(self, shell: Any, kernel: Kernel | None = None):
        self.shell = shell
        self.kernel = kernel or Kernel()
        self.watcher: Any = None
        self.server: Any = None
        self.autoreload = False
        self.cell_id: str | None = None
        self._count: int | None = None
        #: plugin name -> its last ``%%helix plugin`` definition, when the kernel refused it
        self.refused: dict[str, Refusal] = {}
        #: plugin name -> the compiled code of the ``%%helix plugin`` cell that last defined
        #: it: the checks run it again for a fresh module state per private kernel
        self.definitions: dict[str, Any] = {}
        #: plugin name -> the definition (as in ``definitions``) of the version the kernel runs
        self.accepted: dict[str, Any] = {}
        #: plugin name -> how the latest run of the cell that defined it failed
        self.failed: dict[str, Failure] = {}
        #: plugin name -> class name, of the plugins the running plugin cell defined
        self.cell_classes: dict[str, str] = {}
        #: plugin name -> (cell id, class name) of the cell run that last defined it
        self._defined_by: dict[str, tuple[str | None, str]] = {}
        #: called after each ``%%helix plugin`` cell, refused or not (live check panels)
        self.plugin_cell_listeners: list[Callable[[], None]] = []
        shell.user_ns["helix"] = self.kernel
        shell.events.register("pre_run_cell", self._pre_run_cell)
        shell.set_custom_exc((HelixError, SyntaxError, ReloadInterrupted), _show_helix_error)

    def _pre_run_cell(self, info: Any) -> None:
        self.cell_id = getattr(info, "cell_id", None)
        # IPython counts the cell before running it: the running cell is In[count - 1]
        counted = info.store_history and not info.silent
        self._count = self.shell.execution_count - 1 if counted else self.shell.execution_count

    @property
    def execution_count(self) -> int:
        """The running cell's number, as its ``In [N]`` prompt shows it."""
        return self._count if self._count is not None else self.shell.execution_count

    @property
    def cell_label(self) -> str:
        return f"cell [{self.execution_count}]"

    def plugin_cell_ran(self) -> None:
        for listener in list(self.plugin_cell_listeners):
            with contextlib.suppress(Exception):  # a panel's failure is not the cell's
                listener()

    def reset(self) -> Kernel:
        """Close the kernel and start an empty one (the notebook's ``helix`` is rebound)."""
        self.refused.clear()
        self.definitions.clear()
        self.accepted.clear()
        self.failed.clear()
        self._defined_by.clear()
        self.stop_extras()
        self.kernel.close()
        self.kernel = Kernel()
        self.shell.user_ns["helix"] = self.kernel
        return self.kernel

    def stop_extras(self) -> None:
        for attr in ("watcher", "server"):
            handle = getattr(self, attr)
            if handle is not None:
                handle.stop()
                setattr(self, attr, None)

    def close(self) -> None:
        self.stop_extras()
        self.kernel.close()
        self.shell.events.unregister("pre_run_cell", self._pre_run_cell)
        self.shell.set_custom_exc((), None)
        if self.shell.user_ns.get("helix") is self.kernel:
            del self.shell.user_ns["helix"]

    @contextlib.contextmanager
    def plugin_cell_run(self, cell: str) -> Iterator[None]:
        """Around one run of a ``%%helix plugin`` cell: record which plugins it no longer
        defines (``failed``), so that the checks judge the notebook, not what still runs."""
        label = self.cell_label
        self.cell_classes = {}
        try:
            yield
        except BaseException as exc:
            self._plugin_cell_ran(cell, label, exc)
            raise
        self._plugin_cell_ran(cell, label, None)

    def _plugin_cell_ran(self, cell: str, label: str, error: BaseException | None) -> None:
        defined = self.cell_classes  # plugin name -> its class's name, for what this run defined
        class_names = set(re.findall(r"^class\s+(\w+)", cell, re.MULTILINE))
        cell_id = self.cell_id
        before_run = [
            name
            for name, (unit, class_name) in self._defined_by.items()
            if (cell_id is not None and unit == cell_id) or class_name in class_names
        ]
        for name, class_name in defined.items():
            self._defined_by[name] = (cell_id, class_name)
            self.failed.pop(name, None)
        for name in before_run:
            if name in defined:
                continue
            if name not in self.kernel:
                # only ever a refused definition, and the cell no longer defines it: nothing
                # of it runs and the notebook does not define it (as in a fresh kernel)
                self._forget(name)
                continue
            if name in self.refused:
                # the refused definition is no longer the notebook's either: the checks try
                # the version still running, as a fresh run of the notebook would
                del self.refused[name]
                if name in self.accepted:
                    self.definitions[name] = self.accepted[name]
                else:
                    self.definitions.pop(name, None)
            if error is None or (isinstance(error, HelixError) and defined):
                now = ", ".join(map(repr, defined)) or "no plugin"
                self.failed[name] = Failure(label, f"the cell now defines {now}, not {name!r}")
            else:
                self.failed[name] = Failure(label, *_error_line(error))

    def _forget(self, name: str) -> None:
        self.refused.pop(name, None)
        self.definitions.pop(name, None)
        self.accepted.pop(name, None)
        self.failed.pop(name, None)
        self._defined_by.pop(name, None)

    @contextlib.contextmanager
    def plugin_output(self) -> Iterator[None]:
        """Collect what plugins print (from any thread) while the kernel works, then show it here.

        Plugin code runs on the kernel's threads; without this, its prints would land in
        whichever cell the frontend happens to associate with those threads.
        """
        buffer = io.StringIO()
        with foreground(), contextlib.redirect_stdout(buffer):
            try:
                yield
            finally:
                pass
        if buffer.getvalue():
            sys.stdout.write(buffer.getvalue())


def _error_line(error: BaseException) -> tuple[str, int | None]:
    """An error of a cell run, in one line, and the cell line it points at."""
    message = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    if isinstance(error, SyntaxError):
        text = f"{type(error).__name__}: {error.msg.split(';')[0]}"
        return text, error.lineno
    frames = learner_frames(error)
    return text, frames[-1].tb_lineno if frames else None


def _show_helix_error(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset=None):
    """Show a HelixError as IPython shows an ordinary cell's error: the learner's own frames
    (a plugin's ``raise`` included, which lives in the error's cause), then the plain message.

    helixlab's, IPython's and the standard library's frames are dropped, and so is the
    cell frame that only calls the ``%helix`` magic (it would echo the whole cell).
    """
    if isinstance(value, ReloadInterrupted):  # one line: how the interrupted reload ended
        stb = shell.InteractiveTB.get_exception_only(etype, value)
        shell._showtraceback(etype, value, stb)
        return stb
    if not isinstance(value, HelixError):
        shell.showsyntaxerror()  # a syntax error: IPython's own display (cell, line, caret)
        return None
    if isinstance(value, PluginNotFoundError) and len(learner_frames(value, tb)) <= 1:
        # a cell that uses a plugin before the cell defining it ran (after a restart, say):
        # one line, saying what to run, not a traceback through the cell
        stb = [
            f"{etype.__name__}: {value} If a `%%helix plugin` cell defines {value.name!r}, "
            f"run that cell first."
        ]
        shell._showtraceback(etype, value, stb)
        return stb
    trimmed = None
    for frame in reversed(learner_frames(value, tb)):
        trimmed = types.TracebackType(trimmed, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    report = getattr(value, "report", None)
    if report is not None and report.order:  # a rolled-back cascade: show what was attempted
        from IPython.display import display

        display(report)
    value.__cause__ = None
    value.__suppress_context__ = True
    if trimmed is None:  # nothing of the learner's to show: the message alone
        stb = shell.InteractiveTB.get_exception_only(etype, value)
    else:
        stb = shell.InteractiveTB.structured_traceback(etype, value, trimmed, tb_offset=0)
    shell._showtraceback(etype, value, stb)
    return stb


def learner_frames(error: BaseException, tb: Any = None) -> list[Any]:
    """The traceback entries of ``error`` and of its causes that are the learner's code."""
    frames: list[Any] = []
    seen: set[int] = set()
    current: BaseException | None = error
    entry = tb if tb is not None else error.__traceback__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        while entry is not None:
            code = entry.tb_frame.f_code
            if not code.co_filename.startswith(_HIDDEN) and not _calls_magic(entry):
                frames.append(entry)
            entry = entry.tb_next
        current = getattr(current, "cause", None) or current.__cause__
        entry = current.__traceback__ if current is not None else None
    return frames


def _calls_magic(entry: Any) -> bool:
    """A cell frame whose line is IPython's rewrite of a ``%helix`` or ``%%helix`` line."""
    code = entry.tb_frame.f_code
    line = linecache.getline(code.co_filename, entry.tb_lineno)
    return "_magic('helix'" in line
