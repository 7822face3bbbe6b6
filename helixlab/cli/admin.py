"""``helixlab reload NAME``, ``helixlab configure NAME key=value…``, ``helixlab status``.

The command-line clients of a running gateway's admin API (see ``helixlab serve
--admin-key``). They find the gateway at ``--url`` (default: ``$HELIXLAB_URL``, else
http://127.0.0.1:8000) and send ``--admin-key`` (default: ``$HELIXLAB_ADMIN_KEY``). Each
prints the reload report the server answered with; exit 0 when it was applied, 1 when
it was refused (the old versions keep serving), 2 for a usage problem (an unknown
plugin, a config its model refuses, a missing or wrong key).

    $ helixlab reload header-stamp
    reloaded header-stamp: 1 plugin(s), dependencies first
      1. header-stamp 1.0.0
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import yaml

from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Commands, say, table

__all__ = ["register"]

URL_VARIABLE, KEY_VARIABLE = "HELIXLAB_URL", "HELIXLAB_ADMIN_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"


def register(commands: Commands) -> None:
    reload = commands.add_parser(
        "reload",
        help="hot reload a plugin of a running gateway (admin API)",
        description="Reload NAME (re-read from disk if it came from a file) with its dependents.",
    )
    reload.add_argument("name", metavar="NAME")
    _connection(reload)
    reload.set_defaults(run=_reload)

    configure = commands.add_parser(
        "configure",
        help="change a plugin's settings on a running gateway (admin API)",
        description="Merge key=value settings (YAML values) over NAME's config and reload it.",
    )
    configure.add_argument("name", metavar="NAME")
    configure.add_argument("settings", metavar="key=value", nargs="+")
    _connection(configure)
    configure.set_defaults(run=_configure)

    status = commands.add_parser(
        "status",
        help="the plugins of a running gateway: state, version, health (admin API)",
    )
    _connection(status)
    status.set_defaults(run=_status)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help=f"the gateway's base URL (default: ${URL_VARIABLE}, else {DEFAULT_URL})"
    )
    parser.add_argument("--admin-key", help=f"the admin key (default: ${KEY_VARIABLE})")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One admin request; returns (status, JSON) or an exit status after saying why."""
    import httpx

    url = (args.url or os.environ.get(URL_VARIABLE) or DEFAULT_URL).rstrip("/")
    key = args.admin_key or os.environ.get(KEY_VARIABLE)
    if not key:
        say(f"no admin key: pass --admin-key KEY or set {KEY_VARIABLE}")
        return EXIT_USAGE
    try:
        response = httpx.request(
            method,
            url + path,
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )
    except httpx.HTTPError as exc:
        say(f"no gateway answers at {url} ({exc}); pass --url or set {URL_VARIABLE}")
        return EXIT_ERROR
    if response.status_code == 404 and not response.content.startswith(b'{"ok"'):
        say(f"{url} has no admin API: start it with `helixlab serve CONFIG --admin-key KEY`")
        return EXIT_USAGE
    try:
        data = response.json()
    except ValueError:
        say(f"{url}{path} answered {response.status_code} without JSON")
        return EXIT_ERROR
    if response.status_code == 401:
        say(data.get("error", {}).get("message", "the admin key was refused"))
        return EXIT_USAGE
    return response.status_code, data


def _outcome(result: Any) -> int:
    if isinstance(result, int):
        return result
    status, data = result
    print(data.get("text", ""), file=sys.stdout if data.get("ok") else sys.stderr, flush=True)
    if data.get("ok"):
        return EXIT_OK
    return EXIT_ERROR if status == 409 else EXIT_USAGE


def _reload(args: argparse.Namespace) -> int:
    return _outcome(_call(args, "POST", "/admin/reload", {"plugin": args.name}))


def _configure(args: argparse.Namespace) -> int:
    config: dict[str, Any] = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            say(f"{item!r}: write settings as key=value, e.g. burst_size=20")
            return EXIT_USAGE
        try:
            config[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            config[key] = value
    return _outcome(
        _call(args, "POST", "/admin/configure", {"plugin": args.name, "config": config})
    )


def _status(args: argparse.Namespace) -> int:
    result = _call(args, "GET", "/admin/plugins")
    if isinstance(result, int):
        return result
    _, data = result
    rows = [("PLUGIN", "VERSION", "KIND", "STATE", "HEALTH", "RELOADS", "FROM")]
    for row in data["data"]:
        origin = row.get("source") or row["origin"]
        rows.append(
            (
                row["name"],
                row["version"],
                row["kind"],
                row["state"],
                row["health"],
                str(row["reload_count"]),
                origin,
            )
        )
    for line, r in zip(table(rows), rows):
        print(line, flush=True)
        for error in [x["error"] for x in data["data"] if x["name"] == r[0] and x.get("error")]:
            print(f"    error: {error}", flush=True)
    return EXIT_OK
