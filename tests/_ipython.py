"""A headless IPython shell with helixlab loaded, and a way to run cells as a notebook would.

The ``ip`` fixture (import ``ip_fixture``) is IPython's global test shell with
``%load_ext helixlab`` done; ``run(ip, source)`` runs one cell and returns what the user
would see: stdout (the traceback included), stderr (where ``UsageError`` goes) and the
text of every displayed object.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

from helixlab.notebook import session_of

__all__ = ["Ran", "completions", "ip_fixture", "plain", "run"]


@dataclass
class Ran:
    """One executed cell: its result and everything it showed."""

    result: Any
    stdout: str
    stderr: str
    displayed: list[str]

    @property
    def error(self) -> BaseException | None:
        return self.result.error_in_exec or self.result.error_before_exec

    @property
    def shown(self) -> str:
        """All the text a user sees under the cell."""
        return "\n".join([self.stdout, self.stderr, *self.displayed])

    @property
    def last_line(self) -> str:
        """The traceback's last line: the error as the user reads it."""
        return [line for line in self.stdout.splitlines() if line.strip()][-1]


def run(shell: Any, source: str, cell_id: str | None = None) -> Ran:
    """Run ``source`` as a notebook cell (``cell_id`` as Jupyter would give it)."""
    with capture_output() as captured:
        result = shell.run_cell(source, store_history=True, cell_id=cell_id)
    displayed = [o.data.get("text/plain", "") for o in captured.outputs]
    return Ran(result, captured.stdout, captured.stderr, displayed)


def completions(shell: Any, line: str) -> list[str]:
    """What Tab offers at the end of ``line`` (the word under the cursor completed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        _, matches = shell.Completer.complete(line_buffer=line, cursor_pos=len(line))
    return matches


def plain(shell: Any, obj: Any) -> str:
    """The ``text/plain`` IPython would show (and nbval would compare) for ``obj``."""
    data, _ = shell.display_formatter.format(obj)
    return data["text/plain"]


@pytest.fixture(name="ip")
def ip_fixture() -> Iterator[Any]:
    """The shell, with ``%load_ext helixlab`` done; unloaded (kernel closed) afterwards."""
    shell = start_ipython() or TerminalInteractiveShell.instance()  # the first call builds it
    with capture_output():
        shell.run_line_magic("load_ext", "helixlab")
    yield shell
    if session_of(shell) is not None:
        with capture_output():
            shell.run_line_magic("unload_ext", "helixlab")
    shell.user_ns.pop("hx", None)
