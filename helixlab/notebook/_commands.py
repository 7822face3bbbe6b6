"""The ``%helix`` subcommands: each takes the session and the parsed arguments and
returns what the cell shows.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from IPython.core.error import UsageError

from ._displays import EventTable, GraphView, HealthTable, PluginTable, Text
from ._drawing import to_dot, to_text

__all__: list[str] = []


def _name(session: Any, name: str) -> str:
    if name not in session.kernel:
        raise UsageError(f"%helix: {unknown_plugin(name, session.kernel.names)}")
    return name


def unknown_plugin(name: str, known: list[str]) -> str:
    """ "no plugin named ...", with the closest registered name when it looks like a typo."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    names = ", ".join(known) or "none registered yet"
    return f"no plugin named {name!r}.{guess} (known: {names})"


def cmd_list(session: Any, args: Any) -> PluginTable:
    return PluginTable(session.kernel.info())


def cmd_graph(session: Any, args: Any) -> GraphView:
    kernel = session.kernel
    states = {row.name: row.state for row in kernel.info()}
    highlight = kernel.last_cascade
    graph = kernel.graph
    return GraphView(
        to_dot(graph, states=states, highlight=highlight),
        to_text(graph, states=states, highlight=highlight),
        args.format,
    )


def cmd_order(session: Any, args: Any) -> Text:
    order = session.kernel.graph.load_order()
    return Text(" -> ".join(order) if order else "no plugins registered")


def cmd_load(session: Any, args: Any) -> Any:
    kernel = session.kernel
    target = args.target
    with session.plugin_output():
        if target is None:
            return kernel.load_all()
        if target in kernel:
            return kernel.load(target)
        if not Path(target).exists():
            close = difflib.get_close_matches(target, kernel.names, n=1, cutoff=0.6)
            guess = f" Did you mean {close[0]!r}?" if close else ""
            known = ", ".join(kernel.names) or "none"
            raise UsageError(
                f"%helix load: {target!r} is neither a registered plugin ({known}) nor a "
                f"file.{guess}"
            )
        kernel.apply_config(Path(target))
        return kernel.load_all()


def cmd_start(session: Any, args: Any) -> Any:
    with session.plugin_output():
        return session.kernel.load(_name(session, args.name))


def cmd_discover(session: Any, args: Any) -> Any:
    path = Path(args.path)
    if not path.is_dir():
        raise UsageError(f"%helix discover: {args.path!r} is not a directory.")
    names = session.kernel.discover(path)
    if args.no_load:
        return Text(f"registered: {', '.join(names) or 'nothing new'}")
    with session.plugin_output():
        return session.kernel.load_all()


def cmd_reload(session: Any, args: Any) -> Any:
    name = _name(session, args.name)
    cascade = not args.no_cascade
    if args.dry_run:
        order = session.kernel.preview_reload(name, cascade=cascade)
        return Text(f"would reload, in order: {' -> '.join(order) or 'nothing (not running)'}")
    with session.plugin_output():
        return session.kernel.reload(name, cascade=cascade)


def cmd_unload(session: Any, args: Any) -> Text:
    with session.plugin_output():
        order = session.kernel.unload(_name(session, args.name))
    return Text(f"stopped, dependents first: {' -> '.join(order) or 'nothing was running'}")


cmd_stop = cmd_unload
cmd_status = cmd_list


def cmd_configure(session: Any, args: Any) -> Any:
    name = _name(session, args.name)
    config: dict[str, Any] = {}
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise UsageError(f"%helix configure: expected KEY=VALUE, got {setting!r}.")
        try:
            config[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            config[key] = value
    with session.plugin_output():
        report = session.kernel.configure(name, config)
    return report if report is not None else Text(f"configured {name} (not running)")


def cmd_health(session: Any, args: Any) -> HealthTable:
    return HealthTable(session.kernel.health())


def cmd_events(session: Any, args: Any) -> EventTable:
    return EventTable(session.kernel.events(plugin=args.plugin, limit=args.n))


def cmd_watch(session: Any, args: Any) -> Text:
    if session.watcher is not None:
        session.watcher.stop()
        session.watcher = None
    if args.path == "off":
        return Text("file watching off")
    path = Path(args.path)
    if not path.is_dir():
        raise UsageError(f"%helix watch: {args.path!r} is not a directory.")
    session.watcher = session.kernel.watch_files(path)
    return Text(f"watching {args.path}: saved plugin files hot reload with their dependents")


def cmd_serve(session: Any, args: Any) -> Text:
    if session.server is not None:
        session.server.stop()
        session.server = None
    if args.action == "stop":
        return Text("gateway stopped")
    session.server = session.kernel.serve(port=args.port)
    return Text(
        f"gateway serving at {session.server.url} (OpenAI base URL: {session.server.url}/v1)"
    )


def cmd_dashboard(session: Any, args: Any) -> Any:
    from .widgets import Dashboard

    return Dashboard(session.kernel)


def cmd_check(session: Any, args: Any) -> Any:
    from ..checks import run_check

    if args.live:
        from ._live_checks import CheckPanel

        return CheckPanel(session, args.lab)
    return run_check(
        args.lab,
        session.kernel,
        session.shell.user_ns,
        strict=args.strict,
        refused=session.refused,
        definitions=session.definitions,
        failed=session.failed,
    )


def cmd_reset(session: Any, args: Any) -> Text:
    session.reset()
    return Text("kernel reset: no plugins registered")


def cmd_autoreload(session: Any, args: Any) -> Text:
    from ._cells import set_autoreload

    set_autoreload(session, args.mode == "on")
    if args.mode == "on":
        return Text(
            "autoreload on: re-running a cell that redefines a registered plugin reloads it"
        )
    return Text("autoreload off")


def cmd_fleet(session: Any, args: Any) -> Any:
    """The fleet's live view; its code lives with the fleet (helixlab/fleet/_widget.py)."""
    from ..fleet._cli import redis_url
    from ..fleet._widget import FleetView

    return FleetView(redis_url(args.redis, args.fleet), args.fleet)
