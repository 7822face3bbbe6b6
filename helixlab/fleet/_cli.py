"""The fleet's command line: ``serve --workers N --redis URL`` and ``helixlab fleet ...``.

``helixlab fleet status`` shows every worker (host, pid, generation, state, last error);
``fleet reload NAME`` and ``fleet configure NAME key=value ...`` reload the whole fleet
as one generation, or roll it back everywhere and say which worker, plugin and phase
failed. The Redis is ``--redis URL``, else ``$HELIXLAB_REDIS``, else the one a fleet
started on this host recorded in its state file. The fleet options (``--redis``,
``--fleet``, ``--timeout``) go before or after the action.

Exit status: 0 done; 1 the fleet refused (rolled back everywhere, busy, no worker);
2 a usage error; 3 the fleet's Redis cannot be reached or refused a command. Every
failure is one line on stderr; passwords (in the Redis URL) and secret settings
(``configure NAME api_key=...``) show as ``***``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
import time
from typing import Any

from .._extras import require
from ..cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, say, table
from ..errors import FleetError, FleetRedisError
from ..kernel import Change
from ._coordinator import live_workers, propose
from ._generation import parse_assignments
from ._options import FleetOptions, fleet_options
from ._private import mask_values, public_url
from ._redis import Keys, connected
from ._supervisor import Supervisor, state_file

EXIT_REDIS = 3  # the fleet's Redis cannot be reached or refused a command

__all__ = [
    "add_fleet_command",
    "add_serve_options",
    "fleet_status",
    "format_status",
    "read_status",
    "redis_url",
    "register",
    "run_fleet",
    "serve_fleet",
    "wants_fleet",
]


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """``--workers``, ``--redis``, ``--fleet``, ``--rate-limit-policy`` on ``helixlab serve``
    (each also settable in the YAML's ``fleet:`` section; the command line wins)."""
    serve.add_argument("--workers", type=int, help="worker processes on the one port (default 1)")
    serve.add_argument(
        "--redis", help="join the fleet on this Redis (default with --workers > 1: a private one)"
    )
    serve.add_argument("--fleet", help="the fleet's name on that Redis (default helixlab)")
    serve.add_argument(
        "--rate-limit-policy",
        choices=("open", "closed"),
        help="when Redis is unreachable, admit (open, the default) or refuse (closed) requests",
    )
    if "--plugins" not in serve._option_string_actions:  # serve may already have it
        serve.add_argument("--plugins", metavar="DIR", help="a plugins directory, on every worker")


def _options(args: argparse.Namespace) -> FleetOptions:
    from ..kernel import parse_config

    return fleet_options(
        parse_config(args.config),
        workers=args.workers,
        redis=args.redis,
        name=args.fleet,
        rate_limit_policy=args.rate_limit_policy,
    )


def wants_fleet(args: argparse.Namespace) -> bool:
    """``--workers 1`` (the default) without Redis is the single process, unchanged.

    Raises ConfigError for a bad ``fleet:`` section (serve exits 2 with its lines).
    """
    return _options(args).is_fleet


def serve_fleet(args: argparse.Namespace) -> int:
    """Run the supervisor until Ctrl-C or SIGTERM."""
    from .._net import http_url
    from ..gateway import gateway_config
    from ..kernel import parse_config

    options = gateway_config(
        parse_config(args.config),
        **{k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None},
    )
    fleet = _options(args)
    given = getattr(args, "plugins", None) or []
    dirs = [given] if isinstance(given, str) else list(given)
    dirs += [d for d in parse_config(args.config).plugin_dirs if d not in dirs]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    supervisor = Supervisor(
        args.config,
        fleet.workers,
        host=options.host,
        port=options.port,
        redis=fleet.redis,
        fleet=fleet.name,
        rate_limit_policy=fleet.rate_limit_policy,
        plugins=_one_plugins_dir(dirs),
        admin_key=getattr(args, "admin_key", None) or os.environ.get("HELIXLAB_ADMIN_KEY"),
        verify=getattr(args, "verify", False),
        entry_points=getattr(args, "entry_points", True),
        loop=getattr(args, "loop", "auto"),
        http=getattr(args, "http", "auto"),
    )
    supervisor.start()
    try:
        url = http_url(supervisor.host, supervisor.port)
        say(
            f"fleet {fleet.name!r}: {fleet.workers} worker(s) serving {url} "
            f"(OpenAI base URL {url}/v1), Redis {public_url(supervisor.redis_url or '')}"
        )
        print(url, flush=True)  # stdout carries only the URL, for scripts
        stop.wait()
        say("stopping the workers (each drains its requests), then Redis")
    finally:
        supervisor.stop()
    say("stopped")
    return EXIT_OK


def _one_plugins_dir(plugins: str | list[str] | None) -> str | None:
    """serve's ``--plugins`` (one directory, or a repeatable option's list)."""
    if not plugins:
        return None
    if isinstance(plugins, str):
        return plugins
    if len(plugins) > 1:
        raise FleetError(
            f"A fleet takes one plugins directory (its files are part of each generation), "
            f"not {len(plugins)}: {', '.join(plugins)}."
        )
    return plugins[0]


def register(commands: Any) -> None:
    """Add ``helixlab fleet`` to a CLI whose subcommands set a ``run`` default."""
    add_fleet_command(commands)
    commands.choices["fleet"].set_defaults(run=run_fleet)


def add_fleet_command(commands: Any) -> None:
    """``helixlab fleet status | reload NAME | configure NAME key=value ...``."""
    fleet = commands.add_parser(
        "fleet",
        help="status, reload and configure of a whole fleet",
        description="Act on every worker of a fleet, as one generation.",
    )
    _fleet_options(fleet, defaults=True)
    actions = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status", help="every worker: host, pid, generation, state, content digest"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    reload = actions.add_parser("reload", help="reload a plugin on every worker, as one")
    reload.add_argument("name", metavar="NAME")
    configure = actions.add_parser("configure", help="change a plugin's config fleet-wide")
    configure.add_argument("name", metavar="NAME")
    configure.add_argument("values", metavar="KEY=VALUE", nargs="+")
    for action in (status, reload, configure):  # `fleet status --redis URL` too
        _fleet_options(action, defaults=False)


def _fleet_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--redis``, ``--fleet``, ``--timeout``: on ``fleet`` with their defaults, and on each
    action without (SUPPRESS: given after the action, they win; not given, they leave the
    value given before it alone)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--redis",
        default=default(None),
        help="the fleet's Redis (default: $HELIXLAB_REDIS, else the fleet started on this host)",
    )
    parser.add_argument("--fleet", default=default("helixlab"), help="the fleet's name")
    parser.add_argument(
        "--timeout", type=float, default=default(30.0), help="seconds to wait for workers"
    )


def redis_url(redis: str | None, fleet: str) -> str:
    """``redis``, else $HELIXLAB_REDIS, else the Redis a fleet on this host recorded."""
    if redis:
        return redis
    if os.environ.get("HELIXLAB_REDIS"):
        return os.environ["HELIXLAB_REDIS"]
    state = state_file(fleet)
    if state.exists():
        return str(json.loads(state.read_text())["redis"])
    raise FleetError(
        f"No fleet {fleet!r} runs on this host; pass --redis URL (or set HELIXLAB_REDIS)."
    )


def run_fleet(args: argparse.Namespace) -> int:
    """The ``helixlab fleet`` subcommands; returns the exit status."""
    require("fleet", "the fleet")  # one line, before any Redis is looked for
    values: dict[str, Any] = {}
    try:
        if args.fleet_command == "configure":
            values = parse_assignments(args.values)
        return asyncio.run(_run(args, redis_url(args.redis, args.fleet), values))
    except FleetRedisError as exc:
        say(str(exc))
        return EXIT_REDIS
    except FleetError as exc:
        say(mask_values(str(exc), values))
        return EXIT_ERROR
    except ValueError as exc:
        say(mask_values(str(exc), values))
        return EXIT_USAGE


async def _run(args: argparse.Namespace, url: str, values: dict[str, Any]) -> int:
    async with connected(url) as r:
        keys = Keys(args.fleet)
        if args.fleet_command == "status":
            rows = await fleet_status(r, keys)
            print(json.dumps(rows, indent=2) if args.json else format_status(rows))
            return EXIT_OK
        if args.fleet_command == "reload":
            change = Change.reload(args.name)
        else:
            change = Change.configure(args.name, values)
        report = await propose(r, keys, change, timeout=args.timeout)
        print(mask_values(str(report), values))
        return EXIT_OK


async def fleet_status(r: Any, keys: Keys) -> dict[str, Any]:
    """The fleet as data: its committed generation and every live worker."""
    committed = await r.get(keys.committed)
    digest = await r.hget(keys.generation(int(committed)), "digest") if committed else None
    workers = sorted((await live_workers(r, keys)).values(), key=lambda w: (w["host"], w["slot"]))
    return {
        "fleet": keys.fleet,
        "generation": int(committed) if committed else None,
        "digest": digest,
        "workers": workers,
    }


async def read_status(url: str, keys: Keys) -> dict[str, Any]:
    """:func:`fleet_status` over a connection of its own (FleetRedisError if Redis fails)."""
    async with connected(url) as r:
        return await fleet_status(r, keys)


def format_status(status: dict[str, Any]) -> str:
    """``status`` as the table ``helixlab fleet status`` prints."""
    head = (
        f"fleet {status['fleet']!r}: generation {status['generation']} "
        f"({status['digest']}), {len(status['workers'])} worker(s)"
    )
    rows = [("WORKER", "HOST", "PID", "GEN", "STATE", "DIGEST", "UP", "LAST ERROR")]
    now = time.time()
    for w in status["workers"]:
        up = f"{now - w['started']:.0f}s"
        rows.append(
            (
                w["id"],
                w["host"],
                str(w["pid"]),
                str(w["generation"]),
                w["state"],
                w.get("digest") or "-",  # what it serves: the committed digest once converged
                up,
                (w.get("last_error") or "-")[:80],
            )
        )
    return "\n".join([head, *table(rows)])
