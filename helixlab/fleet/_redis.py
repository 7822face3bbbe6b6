"""Redis for a fleet: a private ``redis-server`` when none is given, keys, connections.

A fleet without ``--redis`` gets its own redis-server on a Unix socket in a temporary
directory, started with the fleet and stopped with it. It keeps an append-only file
(fsync on every write) in that directory, so a restarted server still knows the
committed generation and every decision: a fleet is never left half-reloaded by it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .._extras import needs
from ..errors import FleetError

__all__ = [
    "EVICTING",
    "INSTALL_HINT",
    "Keys",
    "PrivateRedis",
    "check_eviction",
    "client",
    "connected",
    "redis_binary",
    "retrying",
    "run_sync",
]

T = TypeVar("T")

INSTALL_HINT = (
    "install it ('sudo apt-get install redis-server', or 'conda install redis') "
    "or pass --redis redis://HOST:PORT of a running one"
)


def redis_binary() -> str | None:
    """The redis-server to start: $HELIXLAB_REDIS_SERVER, then PATH, then /usr/bin."""
    found = os.environ.get("HELIXLAB_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


class PrivateRedis:
    """A redis-server of our own on a Unix socket (``url``); ``stop()`` or a context manager.

    ``port`` > 0 listens on loopback TCP too (the tests use it to stop and restart it on
    the same address); ``persist`` keeps the append-only file across a restart.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, port: int = 0):
        binary = redis_binary()
        if binary is None:
            raise FleetError(f"A fleet needs Redis and redis-server was not found: {INSTALL_HINT}.")
        self.binary = binary
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="helixlab-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        # a Unix socket path must stay under ~100 bytes: its own short directory
        self._socket_dir = tempfile.mkdtemp(prefix="hxr-")
        self.socket = Path(self._socket_dir) / "redis.sock"
        self.port = port
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) the server and return once it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        with needs("fleet", "the fleet"):
            import redis

        deadline = time.monotonic() + timeout
        probe = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    out = self.process.stderr
                    err = out.read().decode(errors="replace").strip() if out else ""
                    raise FleetError(f"redis-server ({self.binary}) exited at start: {err}")
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise FleetError(f"redis-server did not answer within {timeout:g}s.")
                time.sleep(0.02)  # a child process's socket: nothing to await but its file
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); the data stays in ``dir``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def close(self) -> None:
        """Stop the server and remove its directory (if it was ours)."""
        self.stop()
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Keys:
    """Every key and channel of one fleet, under ``helixlab:fleet:{name}:``."""

    fleet: str

    @property
    def prefix(self) -> str:
        return f"helixlab:fleet:{self.fleet}:"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    @property
    def workers_pattern(self) -> str:
        return f"{self.prefix}worker:*"

    @property
    def committed(self) -> str:
        return f"{self.prefix}committed"

    def generation(self, gen: int) -> str:
        return f"{self.prefix}gen:{gen}"

    def votes(self, gen: int) -> str:
        return f"{self.prefix}votes:{gen}"

    def swapped(self, gen: int) -> str:
        return f"{self.prefix}swapped:{gen}"

    def decision(self, gen: int) -> str:
        return f"{self.prefix}decision:{gen}"

    def commit(self, gen: int) -> str:
        """The proposer's signed commit decision for ``gen`` (see ``_signing.sign_commit``)."""
        return f"{self.prefix}commit:{gen}"

    @property
    def lock(self) -> str:
        return f"{self.prefix}lock"

    @property
    def history(self) -> str:
        """The last committed generations' ids, newest first (a list)."""
        return f"{self.prefix}history"

    @property
    def seq(self) -> str:
        """The counter every generation's id comes from (INCR: never reused)."""
        return f"{self.prefix}seq"

    @property
    def proposal(self) -> str:
        """The open proposal's id (a register; the stream only wakes readers up)."""
        return f"{self.prefix}proposal"

    @property
    def stream(self) -> str:
        """The fleet's log of proposals, votes, decisions and swaps (a Redis Stream)."""
        return f"{self.prefix}log"

    def notes(self, gen: int) -> str:
        """Workers' interim answers to a proposal (``busy: draining``), not votes."""
        return f"{self.prefix}notes:{gen}"

    def bucket(self, client: str) -> str:
        return f"{self.prefix}ratelimit:{client}"


#: Eviction policies under which Redis may drop the fleet's generations (any key).
EVICTING = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


def check_eviction(r: Any, url: str) -> str | None:
    """Refuse a Redis that may evict any key (``maxmemory-policy allkeys-*``): the committed
    generation's content could go while the pointer to it stays. Returns a note when the
    policy cannot be read (a managed Redis without CONFIG): workers then re-store the
    committed generation from their own signed copy whenever it is missing."""
    import redis

    try:
        policy = (r.config_get("maxmemory-policy") or {}).get("maxmemory-policy")
    except redis.ResponseError as exc:
        return f"maxmemory-policy of {url} could not be read ({exc})"
    if policy in EVICTING:
        raise FleetError(
            f"Redis at {url} evicts any key when full (maxmemory-policy {policy}): it could "
            f"drop the fleet's committed generation. Give the fleet a Redis with "
            f"'maxmemory-policy noeviction' or a volatile-* policy (CONFIG SET "
            f"maxmemory-policy noeviction, or in redis.conf)."
        )
    return None


def client(url: str, *, asyncio: bool = True, timeout: float = 5.0):
    """A redis-py client (asyncio by default) for ``url``: redis://, rediss:// or unix://."""
    with needs("fleet", "the fleet"):
        import redis
        import redis.asyncio

    module = redis.asyncio if asyncio else redis
    return module.Redis.from_url(
        url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
    )


async def retrying(fn: Callable[..., Awaitable[T]], *args: Any, patience: float = 60.0) -> T:
    """``await fn(*args)``, retried with backoff while Redis is unreachable (a restart), for
    up to ``patience`` seconds; any other error, or Redis past that, is raised."""
    import asyncio

    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return await fn(*args)
        except Exception as exc:
            if time.monotonic() > deadline or not exc.__class__.__module__.startswith("redis"):
                raise
            await asyncio.sleep(delay)  # reconnect backoff: no event to wait on
            delay = min(delay * 2, 1.0)


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Any]:
    """An asyncio client for ``url``, closed after; a Redis failure inside (down, refused
    credentials or a command) is raised as the documented FleetRedisError."""
    from ._private import redis_failure

    r = client(url)
    try:
        yield r
    except Exception as exc:
        failure = redis_failure(exc, url)
        if failure is None:
            raise
        raise failure from None
    finally:
        with contextlib.suppress(Exception):  # a client that never connected
            await r.aclose()


def run_sync(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run the coroutine ``make()`` on a fresh loop in a thread and return its result.

    For synchronous callers that may sit on a running loop (a notebook cell).
    """
    import asyncio

    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(make())
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
