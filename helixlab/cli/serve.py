"""``helixlab serve [CONFIG]``: the gateway from a shell, as the course runs its Go binary.

With no CONFIG it serves ``helixlab/default.yaml`` (custom-provider on the embedded
upstream, helixlab.mockllm), and says so: ``pip install helixlab && helixlab serve`` works.

Binds the address first (a busy port is refused before any plugin starts), then
registers the plugins of every plugins directory (``--plugins DIR``, repeatable, and the
configuration's top-level ``plugin_dirs:``, relative to the file) and of every installed
package's ``helixlab.plugins`` entry point (``--no-entry-points`` to skip), applies the
configuration (built-in plugins resolved by name), starts every plugin in dependency
order, serves the gateway and logs every plugin event to stderr, one line each with
secrets masked.

A running server is reloaded, each way through the same transaction, answering with
the reload report: ``--watch`` (plugin files and the configuration file), SIGHUP
(re-applies the configuration file), and the admin API when an admin key is set
(``--admin-key``, ``HELIXLAB_ADMIN_KEY`` or ``gateway: admin_key:``). ``--verify`` probes
every reload of a middleware or provider through the new chain before it serves.

On Ctrl-C or SIGTERM it stops the server, then the plugins (dependents first), and
exits 0. A bad configuration prints its problems (file:line) and exits 2.

    $ helixlab serve configs/plugins.yaml --port 8080 --plugins plugins/
    helixlab: serving http://127.0.0.1:8080 (OpenAI base URL http://127.0.0.1:8080/v1)
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._net import HTTP_PARSERS, bind_tcp, http_parser, http_url
from ..errors import HelixError
from ..kernel import LOOPS, Kernel, SecretBook, mask, mask_log_records, parse_config
from . import EXIT_ERROR, EXIT_OK, Commands, say
from ._signals import Signals

if TYPE_CHECKING:
    from ..gateway._operations import Operations

__all__ = ["register", "serve"]

ADMIN_KEY_VARIABLE = "HELIXLAB_ADMIN_KEY"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "default.yaml"
#: what this process knows besides its kernel's configuration (an admin key given as an
#: option or in the environment): masked with it wherever text leaves
KNOWN = SecretBook()


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve the OpenAI-compatible gateway built from a plugins.yaml",
        description="Load CONFIG's plugins and serve the gateway until Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "config",
        metavar="CONFIG",
        nargs="?",
        help="a plugins.yaml in the course's format (default: custom-provider on the "
        "embedded upstream, helixlab.mockllm)",
    )
    parser.add_argument("--host", help="address to bind (default: the config's, or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: the config's, or 0 = any free)")
    parser.add_argument(
        "--plugins",
        metavar="DIR",
        action="append",
        default=[],
        help="a plugins directory to load (repeatable; also `plugin_dirs:` in CONFIG)",
    )
    parser.add_argument(
        "--no-entry-points",
        dest="entry_points",
        action="store_false",
        help="do not load plugins published by installed packages ('helixlab.plugins')",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="hot reload when a plugin file or CONFIG is saved",
    )
    parser.add_argument(
        "--admin-key",
        help=f"turn the admin API on at /admin (default: ${ADMIN_KEY_VARIABLE}, or "
        "gateway: admin_key: in CONFIG)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="probe each reload of a middleware or provider before it serves (a canary)",
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="the event loop serving requests (default auto: uvloop when installed)",
    )
    parser.add_argument(
        "--http",
        choices=HTTP_PARSERS,
        default="auto",
        help="the HTTP/1.1 parser (default auto: httptools when installed, else h11)",
    )
    from ..fleet._cli import add_serve_options

    add_serve_options(parser)  # --workers N, --redis URL, ...: a fleet (helixlab/fleet)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from ..fleet._cli import serve_fleet, wants_fleet

    mask_log_records()  # every log line of this process (a fleet's supervisor too) is masked
    if args.config is None:
        args.config = str(DEFAULT_CONFIG)
        say(
            "no CONFIG given: serving custom-provider on the embedded upstream "
            "(helixlab.mockllm: scripted replies, no API key, no network); "
            "pass a plugins.yaml to serve your own plugins and LLM API"
        )

    if wants_fleet(args):  # --workers 1 without Redis: the single process below
        return serve_fleet(args)
    return serve(
        args.config,
        args.host,
        args.port,
        plugin_dirs=args.plugins,
        entry_points=args.entry_points,
        watch=args.watch,
        admin_key=args.admin_key or os.environ.get(ADMIN_KEY_VARIABLE) or None,
        verify=args.verify,
        loop=args.loop,
        http=args.http,
    )


def serve(
    config_path: str,
    host: str | None = None,
    port: int | None = None,
    *,
    plugin_dirs: list[str] | tuple[str, ...] = (),
    entry_points: bool = True,
    watch: bool = False,
    admin_key: str | None = None,
    verify: bool = False,
    loop: str = "auto",
    http: str = "auto",
) -> int:
    """Run ``helixlab serve``; returns the exit status."""
    from ..gateway import gateway_config
    from ..gateway._operations import Operations

    doc = parse_config(config_path)
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if admin_key:
        overrides["admin_key"] = admin_key
    if verify:
        overrides["verify"] = True
    options = gateway_config(doc, **overrides)
    KNOWN.learn([admin_key] if admin_key else [])
    dirs = list(dict.fromkeys([*(str(Path(d).resolve()) for d in plugin_dirs), *doc.plugin_dirs]))

    try:  # first: a busy port must not start (and then stop) every plugin
        sock = bind_tcp(options.host, options.port)
    except OSError as exc:
        say(_bind_message(options.host, options.port, exc))
        return EXIT_ERROR

    # read from a socket the signal handler writes to, whichever thread it ran on: a
    # SIGHUP is never lost, and those that come during a re-apply coalesce into the next
    signals = Signals({signal.SIGINT: "stop", signal.SIGTERM: "stop", signal.SIGHUP: "reapply"})
    signals.__enter__()

    watching: threading.Event | None = None
    try:  # uvloop or httptools asked for but not installed: said before anything starts
        http = http_parser(http)
        kernel = Kernel(loop=loop)
    except (HelixError, ValueError) as exc:
        sock.close()
        say(str(exc))
        return EXIT_ERROR
    kernel.subscribe(lambda event: say(mask(f"event {event}")))
    operations = Operations(kernel, config_path, dirs)
    unowned: socket.socket | None = sock  # closed here unless the server took it
    try:
        for directory in dirs:
            names = kernel.discover(directory)
            say(f"plugins directory {directory}: {', '.join(names) or 'no plugins'}")
        if entry_points:
            names = kernel.discover_entry_points()
            if names:
                say(f"entry points 'helixlab.plugins': {', '.join(names)}")
        kernel.apply_config(config_path)  # built-in plugins are found by name
        report = kernel.load_all()
        say(f"loaded {len(report.order)}: {', '.join(report.order) or 'nothing'}")
        for name, error in report.failed.items():
            say(mask(f"failed {name} in {error.phase}: {error}"))
        for name, why in report.skipped.items():
            say(f"skipped {name}: {why}")
        for line in _unguarded(kernel):
            say(line)
        server = kernel.serve(config=options, sock=sock, operations=operations, http=http)
        unowned = None  # the server owns the socket now
        say(
            f"serving {server.url} (OpenAI base URL {server.openai_base_url}) "
            f"on {kernel.loop_kind} + {server.http}"
        )
        if server.admin is not None:
            say(f"admin API on {server.url}/admin (Authorization: Bearer <the admin key>)")
        if watch:
            watching = _watch(kernel, dirs, config_path, operations)
        print(server.url, flush=True)  # stdout carries only the URL, for scripts
        while "stop" not in (asked := signals.wait()):
            if asked["reapply"]:
                times = f" ({asked['reapply']} signals, coalesced)" if asked["reapply"] > 1 else ""
                say(f"SIGHUP: re-applying {config_path}{times}")
                _tell(asyncio.run(operations.reapply()))  # awaits the kernel's loop
        say("stopping: the server, then the plugins, dependents first")
        server.stop()
    finally:
        if watching is not None:
            watching.set()  # the configuration file's watcher ends within its timeout
        if unowned is not None:
            unowned.close()
        try:
            kernel.close()
        finally:
            signals.__exit__()
    say("stopped")
    return EXIT_OK


def _unguarded(kernel: Kernel) -> list[str]:
    """A guarding plugin (custom-auth) that the configuration disables, said on start-up:
    its requests are served without it, as configured, but never silently."""
    lines = []
    for name in kernel.names:
        entry = kernel.entry(name)
        if entry.cls.required and not entry.spec.enabled:
            where = entry.spec.source + (f", line {entry.spec.line}" if entry.spec.line else "")
            lines.append(
                f"warning: {name} guards requests but is disabled ({where}: enabled: false): "
                "requests are served without it"
            )
    return lines


def _bind_message(host: str, port: int, exc: OSError) -> str:
    where = http_url(host, port).removeprefix("http://")
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the address is already in use (another server "
            f"holds port {port}); no plugin was started. Choose another port with "
            f"--port N (--port 0 picks a free one)."
        )
    return f"cannot listen on {where}: {exc.strerror or exc}; check --host and --port."


def _tell(outcome: Any) -> None:
    for line in outcome.text.splitlines():
        say(mask(line))


def _watch(
    kernel: Kernel, dirs: list[str], config_path: str, operations: Operations
) -> threading.Event:
    """Watch the plugin directories (the kernel's watcher) and the configuration file.

    The file is watched from a thread of its own (its directory, filtered to the file, so
    that an editor replacing it is seen); each change re-applies it. Set the returned
    event to stop that thread.
    """
    stop = threading.Event()
    for directory in dirs:
        watcher = kernel.watch_files(directory)
        threading.Thread(
            target=_tell_reports,
            args=(watcher, stop),
            name="helixlab-reports",
            daemon=True,
        ).start()
        say(f"watching {directory} for plugin changes")
    config = Path(config_path).resolve()

    def follow() -> None:
        import watchfiles

        changes = watchfiles.watch(
            config.parent,
            watch_filter=lambda _, path: Path(path) == config,
            debounce=400,
            stop_event=stop,
            rust_timeout=500,
            yield_on_timeout=False,
        )
        for _ in changes:
            say(f"{config.name} changed: re-applying it")
            _tell(asyncio.run(operations.reapply()))

    threading.Thread(target=follow, name="helixlab-config-watch", daemon=True).start()
    say(f"watching {config} for configuration changes")
    return stop


def _tell_reports(watcher: Any, stop: threading.Event) -> None:
    """Print the report of each reload a saved plugin file caused (its events are logged)."""
    shown: list[int] = []
    batch = watcher.batches
    while not stop.is_set():
        if not watcher.wait_for_batch(batch, timeout=0.5):
            continue
        batch = watcher.batches
        for report in list(watcher.reports):
            if id(report) not in shown and (report.order or report.loaded):
                for line in str(report).splitlines():
                    say(mask(line))
            shown.append(id(report))
        del shown[:-200]
