"""``%helix`` and ``%%helix``: a thin dispatcher over one parser.

Bad syntax raises IPython's ``UsageError`` (shown in one line); everything the kernel
refuses (a failed reload, a cycle, bad config) raises the kernel's own exception, so that
nbval and the user see a real error.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from . import _cells, _commands

__all__ = ["HelixMagics", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are UsageErrors and whose --help returns instead of exiting."""

    def error(self, message: str) -> NoReturn:
        typo = re.match(r"argument \S+: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if typo:  # a misspelt subcommand or choice: name the closest one
            choices = re.findall(r"'([^']*)'", typo.group(2))
            close = difflib.get_close_matches(typo.group(1), choices, n=1)
            if close:
                message = f"invalid choice: {typo.group(1)!r}. Did you mean {close[0]!r}?"
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise UsageError(message.strip())
        raise _HelpShown


class _HelpShown(Exception):
    pass


def build_parser() -> _Parser:
    parser = _Parser(
        prog="%helix",
        description="Drive the notebook's helixlab kernel (bound to `helix`).",
        add_help=True,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str, **kwargs: Any) -> _Parser:
        return sub.add_parser(name, help=help, description=help, **kwargs)

    add("help", "show the commands")
    add("list", "one row per plugin: kind, version, state, health, dependencies")
    add("status", "the same as list (the table `helixlab status` shows for a server)")
    p = add("graph", "the dependency graph, nodes coloured by state, last cascade highlighted")
    p.add_argument("--format", choices=("svg", "text", "dot"), default="svg")
    add("order", "the load order")
    p = add("load", "load every plugin; or one plugin by NAME; or apply a CONFIG file, then load")
    p.add_argument("target", nargs="?", metavar="NAME|CONFIG")
    add("start", "load one plugin (and what it needs)").add_argument("name", metavar="NAME")
    p = add("discover", "register the plugins found in a plugins directory and load them")
    p.add_argument("path", metavar="DIR")
    p.add_argument("--no-load", action="store_true", help="register only")
    p = add("reload", "hot reload a plugin with its dependents")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--no-cascade", action="store_true", help="reload only NAME")
    p.add_argument("--dry-run", action="store_true", help="show the cascade, touch nothing")
    add("unload", "stop a plugin, dependents first").add_argument("name", metavar="NAME")
    add("stop", "the same as unload").add_argument("name", metavar="NAME")
    p = add("configure", "change a plugin's config (validated), then reload it with dependents")
    p.add_argument("name", metavar="NAME")
    p.add_argument("settings", nargs="+", metavar="KEY=VALUE", help="values are YAML")
    add("health", "run every health check (concurrently, with a timeout)")
    p = add("events", "recent kernel events, oldest first")
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many (default 20)")
    p.add_argument("--plugin", metavar="NAME", help="only this plugin's")
    p = add("watch", "hot reload plugins from DIR when their files are saved; `off` stops")
    p.add_argument("path", metavar="DIR|off")
    p = add("serve", "serve the OpenAI-compatible gateway on loopback; `stop` stops it")
    p.add_argument("action", nargs="?", choices=("start", "stop"), default="start")
    p.add_argument("--port", type=int, default=0, metavar="P")
    add("dashboard", "a live dashboard: states, health, reloads, buttons, graph, events")
    p = add("check", "run a lab's self-checks: a ✓ or ✗ (with a hint) per check")
    p.add_argument("lab", metavar="LAB")
    p.add_argument(
        "--live",
        action="store_true",
        help="a panel that re-runs the checks in the background after each plugin cell, "
        "reload or configure",
    )
    p.add_argument("--strict", action="store_true", help="raise if any check fails")
    p = add("fleet", "a live view of a fleet: every worker, requests/s and errors (a widget)")
    p.add_argument("--redis", metavar="URL", help="its Redis (default: the local fleet's)")
    p.add_argument("--fleet", default="helixlab", metavar="NAME")
    add("reset", "close the kernel and start an empty one")
    p = add("autoreload", "hot reload registered plugins redefined in ordinary cells")
    p.add_argument("mode", choices=("on", "off"))
    return parser


PARSER = build_parser()
SUBPARSERS: dict[str, _Parser] = PARSER._subparsers._group_actions[0].choices  # type: ignore[union-attr,assignment]
COMMANDS = sorted(SUBPARSERS)
CELL_KINDS = ("plugin", "config")


@magics_class
class HelixMagics(Magics):
    def __init__(self, shell: Any, session: Any):
        super().__init__(shell)
        self.session = session

    @line_cell_magic
    def helix(self, line: str, cell: str | None = None) -> Any:
        __tracebackhide__ = True  # IPython hides this frame above the user's own code
        if cell is not None:
            return self._cell(line, cell)
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%helix: {exc}") from None
        if not argv:
            argv = ["help"]
        try:
            args, extra = PARSER.parse_known_args(argv)
            if extra:  # name the subcommand's own usage, not `%helix [-h] COMMAND ...`
                parser = SUBPARSERS.get(args.command, PARSER)
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
        except _HelpShown:
            return None
        if args.command == "help":
            PARSER.print_help()
            return None
        handler = getattr(_commands, f"cmd_{args.command}")
        return handler(self.session, args)

    def _cell(self, line: str, cell: str) -> Any:
        __tracebackhide__ = True
        kind, _, rest = line.strip().partition(" ")
        if kind == "plugin":
            with self.session.plugin_cell_run(cell):
                return _cells.plugin_cell(self.session, cell, rest.strip())
        if kind == "config":
            return _cells.config_cell(self.session, cell)
        raise UsageError(
            f"%%helix: unknown cell kind {kind!r}; use `%%helix plugin` or `%%helix config`."
        )


HelixMagics.helix.__doc__ = (
    PARSER.format_help()
    + "\nCell magics:\n  %%helix plugin   define or redefine Plugin classes in the cell "
    "(re-running hot reloads what changed)\n  %%helix config   YAML configuration in the cell\n"
)


def complete(session: Any, event: Any) -> list[str]:
    """Tab completion: subcommands, then plugin names where a NAME goes."""
    words = event.line.split()
    typing_new = event.line.endswith(" ")
    position = len(words) - (0 if typing_new else 1)
    if event.line.lstrip().startswith("%%"):
        return list(CELL_KINDS)
    if position <= 1:
        return COMMANDS
    command = words[1]
    if command in ("reload", "unload", "stop", "start", "configure", "load"):
        return session.kernel.names
    if command == "events":
        return ["-n", "--plugin", *session.kernel.names]
    if command == "graph":
        return ["--format", "svg", "text", "dot"]
    if command == "autoreload":
        return ["on", "off"]
    if command == "serve":
        return ["stop", "--port"]
    if command == "check":
        from ..checks._core import LABS, _load_labs

        _load_labs()
        return list(LABS)
    return []
