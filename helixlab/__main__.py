"""``helixlab COMMAND``: a thin dispatcher over the subcommand modules in ``helixlab.cli``.

Each module in ``COMMANDS`` registers its own parser (``register(commands)``) and the
function that runs it. Errors every command shares map to exit statuses here: a bad
configuration or usage exits 2 with its message (file:line), any other helixlab or OS
error exits 1, never with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .cli import EXIT_ERROR, EXIT_USAGE
from .errors import ConfigError, HelixError

__all__ = ["main"]

# One line per subcommand module (helixlab/cli/<name>.py, each with ``register``).
COMMANDS = ("serve", "admin", "fleet", "grade")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helixlab", description="A hot-reloadable plugin kernel for an LLM gateway."
    )
    parser.add_argument("--version", action="version", version=f"helixlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"helixlab.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``helixlab`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return run(args)
    except ConfigError as exc:
        print(f"helixlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (HelixError, OSError) as exc:
        print(f"helixlab: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
