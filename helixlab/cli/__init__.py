"""The ``helixlab`` command line: one module per subcommand, registered in ``__main__``.

Each subcommand module exposes ``register(commands)``, which adds its parser to the
``argparse`` sub-parsers and sets ``run`` (a function of the parsed arguments returning
the exit status) as its default. ``helixlab/__main__.py`` lists the modules and maps the
errors every command shares to exit statuses, so adding a command is one module and one
line there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "Command", "Commands", "say", "table"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

Commands = argparse._SubParsersAction  # what ``register`` receives
Command = Callable[[argparse.Namespace], int]  # what ``run`` is


def say(text: str) -> None:
    """One line of progress on stderr; stdout stays for what scripts read."""
    print(f"helixlab: {text}", file=sys.stderr, flush=True)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the header first) as lines, each column but the last padded to its widest
    cell and two spaces apart: what the status commands print."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]) for row in rows]
