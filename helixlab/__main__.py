"""``helixlab serve CONFIG``: the gateway from a shell, as the course runs its Go binary
(``--workers N``, ``--redis URL`` and ``helixlab fleet``: see helixlab/fleet/_cli.py).

Loads the configuration (built-in plugins resolved by name), starts every plugin in
dependency order, serves the gateway and logs every plugin event to stderr, one line each
with secrets masked. On Ctrl-C or SIGTERM it stops the server, then the plugins
(dependents first), and exits 0. A bad configuration prints its problems (file:line) and
exits 2, without a traceback.

    $ helixlab serve configs/plugins.yaml --port 8080
    helixlab: serving http://127.0.0.1:8080 (OpenAI base URL http://127.0.0.1:8080/v1)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import ConfigError, HelixError
from .kernel._config import parse_config
from .kernel._secrets import redact_text

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helixlab", description="A hot-reloadable plugin kernel for an LLM gateway."
    )
    parser.add_argument("--version", action="version", version=f"helixlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the OpenAI-compatible gateway built from a plugins.yaml",
        description="Load CONFIG's plugins and serve the gateway until Ctrl-C or SIGTERM.",
    )
    serve.add_argument("config", metavar="CONFIG", help="a plugins.yaml in the course's format")
    serve.add_argument("--host", help="address to bind (default: the config's, or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the config's, or 0 = any free)")
    from .fleet._cli import add_fleet_command, add_serve_options

    add_serve_options(serve)  # --workers N, --redis URL: a fleet
    add_fleet_command(commands)  # helixlab fleet status|reload|configure
    return parser


def _say(text: str) -> None:
    print(f"helixlab: {text}", file=sys.stderr, flush=True)


def serve(config_path: str, host: str | None = None, port: int | None = None) -> int:
    """Run ``helixlab serve``; returns the exit status."""
    from .gateway import gateway_config
    from .kernel import Kernel

    doc = parse_config(config_path)
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    options = gateway_config(doc, **overrides)
    secrets = _secret_values(doc)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    kernel = Kernel()
    kernel.subscribe(lambda event: _say(redact_text(f"event {event}", secrets)))
    try:
        kernel.apply_config(config_path)  # built-in plugins are found by name
        report = kernel.load_all()
        _say(f"loaded {len(report.order)}: {', '.join(report.order) or 'nothing'}")
        for name, error in report.failed.items():
            _say(redact_text(f"failed {name} in {error.phase}: {error}", secrets))
        for name, why in report.skipped.items():
            _say(f"skipped {name}: {why}")
        server = kernel.serve(config=options, host=options.host, port=options.port)
        _say(f"serving {server.url} (OpenAI base URL {server.openai_base_url})")
        print(server.url, flush=True)  # stdout carries only the URL, for scripts
        stop.wait()  # a signal handler runs in the main thread even while it waits here
        _say("stopping: the server, then the plugins, dependents first")
        server.stop()
    finally:
        kernel.close()
    _say("stopped")
    return EXIT_OK


def _secret_values(doc: Any) -> list[Any]:
    """Every value under a secret-looking key, to mask wherever it might be echoed."""
    from .kernel._secrets import is_secret_key

    found: list[Any] = []

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, secret or is_secret_key(str(key)))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, secret)
        elif secret and value is not None:
            found.append(str(value))

    for spec in doc.plugins.values():
        walk(spec.config, False)
    walk(doc.gateway, False)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """The ``helixlab`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "fleet":
        from .fleet._cli import run_fleet

        return run_fleet(args)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        from .fleet._cli import serve_fleet, wants_fleet

        if wants_fleet(args):
            return serve_fleet(args)
        return serve(args.config, args.host, args.port)
    except ConfigError as exc:
        print(f"helixlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (HelixError, OSError) as exc:
        print(f"helixlab: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
