"""A worker's serving: its Kernel loaded with a generation, and the gateway on the fleet's
shared socket, with the fleet's admin operations, metrics and shared rate limits."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from ..kernel import Kernel, parse_config
from ._generation import Generation, write_sources
from ._operations import FleetOperations
from ._redis import Keys

__all__ = ["ADMIN_KEY_VARIABLE", "load", "serve", "use_redis_buckets"]

ADMIN_KEY_VARIABLE = "HELIXLAB_ADMIN_KEY"  # as `helixlab serve` reads it


async def load(kernel: Kernel, gen: Generation, plugins: Path, entry_points: bool) -> Any:
    """Load ``gen`` on a new ``kernel``: its plugin sources (copied to ``plugins``: the
    generation's code, not whatever this host's disk holds), its config; the load report."""
    if entry_points:
        await kernel.adiscover_entry_points()
    if gen.sources:
        await asyncio.to_thread(write_sources, plugins, gen.sources)
        await kernel.adiscover(plugins)
    await kernel.aapply_config(gen.config, source=gen.source)
    return await kernel.aload_all()


async def serve(
    kernel: Kernel, gen: Generation, sock: socket.socket, args: argparse.Namespace, metrics: Any
) -> Any:
    """Serve ``kernel``'s gateway on the inherited ``sock``; its admin API proposes to the
    fleet (``FleetOperations``) instead of changing this worker alone."""
    from ..gateway import gateway_config

    overrides: dict[str, Any] = {}
    if os.environ.get(ADMIN_KEY_VARIABLE):  # not in argv, where `ps` shows it
        overrides["admin_key"] = os.environ[ADMIN_KEY_VARIABLE]
    if args.verify:
        overrides["verify"] = True
    options = gateway_config(parse_config(gen.config, source=gen.source), **overrides)
    operations = FleetOperations(kernel, args.redis, Keys(args.fleet), gen.source)
    wrap = None
    if metrics is not None:
        from ._metrics import MetricsMiddleware

        def wrap(app: Any) -> Any:
            return MetricsMiddleware(app, metrics=metrics)

    return await kernel.aserve(
        config=options, sock=sock, wrap=wrap, operations=operations, http=args.http
    )


def use_redis_buckets(args: argparse.Namespace) -> None:
    """The rate limiter's buckets in the fleet's Redis, shared by every worker (unless
    ``--local-limits``: each worker its own, to measure what sharing changes)."""
    if args.local_limits:
        return
    from ..plugins import _ratelimit
    from ._ratestore import RedisBucketStore

    url, keys, policy = args.redis, Keys(args.fleet), args.rate_limit_policy
    _ratelimit.use_store(lambda config: RedisBucketStore(url, keys, config, policy=policy))
