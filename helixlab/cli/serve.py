"""``helixlab serve CONFIG``: the gateway from a shell, as the course runs its Go binary.

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
import threading
from typing import Any

from ..kernel._config import parse_config
from ..kernel._secrets import redact_text
from . import EXIT_OK, Commands, say

__all__ = ["register", "serve"]


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve the OpenAI-compatible gateway built from a plugins.yaml",
        description="Load CONFIG's plugins and serve the gateway until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("config", metavar="CONFIG", help="a plugins.yaml in the course's format")
    parser.add_argument("--host", help="address to bind (default: the config's, or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: the config's, or 0 = any free)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    return serve(args.config, args.host, args.port)


def serve(config_path: str, host: str | None = None, port: int | None = None) -> int:
    """Run ``helixlab serve``; returns the exit status."""
    from ..gateway import gateway_config
    from ..kernel import Kernel

    doc = parse_config(config_path)
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    options = gateway_config(doc, **overrides)
    secrets = _secret_values(doc)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    kernel = Kernel()
    kernel.subscribe(lambda event: say(redact_text(f"event {event}", secrets)))
    try:
        kernel.apply_config(config_path)  # built-in plugins are found by name
        report = kernel.load_all()
        say(f"loaded {len(report.order)}: {', '.join(report.order) or 'nothing'}")
        for name, error in report.failed.items():
            say(redact_text(f"failed {name} in {error.phase}: {error}", secrets))
        for name, why in report.skipped.items():
            say(f"skipped {name}: {why}")
        server = kernel.serve(config=options, host=options.host, port=options.port)
        say(f"serving {server.url} (OpenAI base URL {server.openai_base_url})")
        print(server.url, flush=True)  # stdout carries only the URL, for scripts
        stop.wait()  # a signal handler runs in the main thread even while it waits here
        say("stopping: the server, then the plugins, dependents first")
        server.stop()
    finally:
        kernel.close()
    say("stopped")
    return EXIT_OK


def _secret_values(doc: Any) -> list[Any]:
    """Every value under a secret-looking key, to mask wherever it might be echoed."""
    from ..kernel._secrets import is_secret_key

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
