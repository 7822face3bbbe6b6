"""What the fleet tests share: the `flaky` plugin, a redis-server of the test's own, a
plugins directory with its YAML, and a Supervisor on them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helixlab.fleet import Keys, PrivateRedis, Supervisor, propose
from helixlab.fleet._redis import client
from helixlab.kernel import Change

#: A plugin whose start (and stop) can be made slow (``delay``, ``stop_delay``) or fail on
#: one worker slot (``fail_slot``); it takes any keys.
FLAKY = """
import asyncio, os
import helixlab as hx

class Flaky(hx.Plugin):
    name = "flaky"
    version = "1.0.0"
    config_model = dict  # takes any keys

    def init(self, ctx, config):
        self.config = dict(config)

    async def start(self, ctx):
        await asyncio.sleep(float(self.config.get("delay", 0)))
        if self.config.get("fail_slot") == int(os.environ.get("HELIXLAB_WORKER_SLOT", -1)):
            raise RuntimeError("flaky refuses to start on this worker")

    async def stop(self, ctx):
        await asyncio.sleep(float(self.config.get("stop_delay", 0)))
"""

CHAT = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, on loopback and a Unix socket; stopped after."""
    server = PrivateRedis(tmp_path / "redis", port=free_port())
    yield server
    server.close()


def plugins_config(folder: Path, config: str) -> Path:
    """``folder/plugins.yaml`` holding ``config``, beside ``folder/plugins/flaky.py``."""
    (folder / "plugins").mkdir()
    (folder / "plugins" / "flaky.py").write_text(FLAKY)
    path = folder / "plugins.yaml"
    path.write_text(config)
    return path


def fleet(config: Path, workers: int, redis: str | None, **options: Any) -> Supervisor:
    """A fleet of ``workers`` on ``redis``, serving ``config`` and its plugins directory."""
    return Supervisor(
        str(config), workers, redis=redis, plugins=str(config.parent / "plugins"), **options
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def propose_to(url: str, change: Change, **kw: Any) -> Any:
    """``propose(...)`` to the fleet ``helixlab`` on the Redis at ``url``."""
    r = client(url)
    try:
        return await propose(r, Keys("helixlab"), change, **kw)
    finally:
        await r.aclose()
