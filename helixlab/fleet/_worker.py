"""One worker process of a fleet: a Kernel and its gateway on the fleet's shared socket.

It joins under the fleet's lock: it loads the *committed* generation (the first worker of
a fleet founds generation 1 from its config file), starts serving, and heartbeats (a key
with a TTL) before it lets the next worker or reload in. Then it answers proposals: it
prepares each one aside, votes through Redis, and commits or aborts as the fleet decides.

Started by the supervisor as ``python -m helixlab.fleet._worker``, with the listening
socket inherited as a file descriptor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .._net import HTTP_PARSERS
from ..errors import HelixError, describe
from ..kernel import LOOPS, loop_factory
from ._apply import Vote, prepare, vote_for
from ._coordinator import decide, lock, unlock
from ._generation import Generation, read_sources, write_sources
from ._operations import FleetOperations
from ._redis import Keys, client

__all__ = ["Worker", "main"]

ADMIN_KEY_VARIABLE = "HELIXLAB_ADMIN_KEY"  # as `helixlab serve` reads it
EXIT_REJOIN = 3  # a worker that cannot know the fleet's generation restarts to rejoin it
HEARTBEAT_TTL = 3.0  # seconds a worker stays in the quorum without a heartbeat
DECISION_PATIENCE = 45.0  # seconds a prepared worker waits for the outcome, then aborts it


def _say(text: str) -> None:
    print(f"helixlab worker {os.getpid()}: {text}", file=sys.stderr, flush=True)


class Worker:
    """The fleet side of one worker process (its Redis loop runs in the main thread)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.keys = Keys(args.fleet)
        self.id = f"{socket.gethostname()}-{os.getpid()}"
        self.generation = 0
        self.state = "joining"
        self.last_error: str | None = None
        self.started = time.time()
        self.kernel: Any = None
        self.server: Any = None
        self.metrics: Any = None
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self._decisions: dict[int, asyncio.Future] = {}
        self._busy = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.r = client(args.redis)
        self.plugins = Path(tempfile.mkdtemp(prefix="helixlab-worker-plugins-"))

    # -- heartbeat ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slot": self.args.slot,
            "url": self.server.url if self.server else None,
            "generation": self.generation,
            "state": self.state,
            "last_error": self.last_error,
            "started": self.started,
            "requests": self.metrics.served if self.metrics else None,
            "errors": self.metrics.errors if self.metrics else None,
            "at": time.time(),
        }

    async def beat(self) -> None:
        await self.r.set(
            self.keys.worker(self.id), json.dumps(self.info()), px=int(HEARTBEAT_TTL * 1000)
        )

    async def heartbeats(self) -> None:
        parent = os.getppid()
        while not self.stopping.is_set():
            if os.getppid() != parent:  # the supervisor died (kill -9): do not linger
                _say("the supervisor is gone; stopping")
                self.stopping.set()
                return
            try:
                await self.beat()
                if self.generation and self.state == "serving":
                    await self._reassert()
                    await self._catch_up_generations()
            except Exception as exc:  # Redis restarting: keep serving, beat again soon
                self.last_error = f"heartbeat: {describe(exc)}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), HEARTBEAT_TTL / 3)

    async def _catch_up_generations(self) -> None:
        """A worker left out of a quorum (its heartbeat lapsed while Redis restarted) applies
        the generations committed without it, in order; if one fails here, it rejoins."""
        committed = await self.r.get(self.keys.committed)
        if committed is None or int(committed) <= self.generation or self._busy.locked():
            return
        async with self._busy:
            for number in range(self.generation + 1, int(committed) + 1):
                stored = await self.r.hgetall(self.keys.generation(number))
                if not stored:  # further behind than the history Redis keeps
                    self._rejoin(f"generation {number} is no longer kept; loading {committed}")
                    return
                gen = Generation.from_hash(stored)
                self.state = f"catching up {number}"
                try:
                    prepared = await prepare(self.kernel, gen, self.plugins)
                except Exception as exc:
                    self._rejoin(f"generation {number} failed here while catching up: {exc}")
                    return
                await self._commit(prepared, gen)
            self.state = "serving"

    def _rejoin(self, why: str) -> None:
        """Exit with status 3: the supervisor restarts this worker on the committed generation."""
        _say(f"rejoining the fleet: {why}")
        self.last_error = why
        self.exit_code = EXIT_REJOIN
        self.stopping.set()

    async def _reassert(self) -> None:
        """A Redis that lost its data (no persistence) learns the fleet's generation back."""
        if await self.r.set(self.keys.committed, self.generation, nx=True):
            await self.r.hset(self.keys.generation(self.generation), mapping=self._gen.to_hash())

    # -- joining -------------------------------------------------------------------------

    async def join(self, sock: socket.socket) -> None:
        from ..gateway import gateway_config
        from ..kernel import Kernel
        from ..kernel._config import parse_config

        await lock(self.r, self.keys, f"worker {self.id} joining", timeout=120)
        try:
            committed = await self.r.get(self.keys.committed)
            if committed is None:
                with open(self.args.config, encoding="utf-8") as f:
                    text = f.read()
                sources = read_sources(self.args.plugins) if self.args.plugins else {}
                gen = Generation(1, text, self.args.config, proposed_by=self.id, sources=sources)
                await self.r.hset(self.keys.generation(1), mapping=gen.to_hash())
                await self.r.set(self.keys.committed, 1)
            else:
                gen = Generation.from_hash(
                    await self.r.hgetall(self.keys.generation(int(committed)))
                )
            self.kernel = Kernel(loop=self.args.loop)
            self.kernel.subscribe(self._on_event)
            if self.args.entry_points:
                await self.kernel.adiscover_entry_points()
            if gen.sources:  # the generation's code, not whatever this host's disk holds
                write_sources(self.plugins, gen.sources)
                await self.kernel.adiscover(self.plugins)
            await self.kernel.aapply_config(gen.config, source=gen.source)
            report = await self.kernel.aload_all()
            for name, error in report.failed.items():
                _say(f"failed {name} in {error.phase}: {self.kernel._redact(str(error))}")
            doc = parse_config(gen.config, source=gen.source)
            overrides: dict[str, Any] = {}
            if os.environ.get(ADMIN_KEY_VARIABLE):  # not in argv, where `ps` shows it
                overrides["admin_key"] = os.environ[ADMIN_KEY_VARIABLE]
            if self.args.verify:
                overrides["verify"] = True
            options = gateway_config(doc, **overrides)
            operations = FleetOperations(self.kernel, self.args.redis, self.keys, gen.source)
            wrap = None
            if self.metrics is not None:
                from ._metrics import MetricsMiddleware

                def wrap(app: Any) -> Any:
                    return MetricsMiddleware(app, metrics=self.metrics)

            self.server = await self.kernel.aserve(
                config=options, sock=sock, wrap=wrap, operations=operations, http=self.args.http
            )
            self._serving(gen)
            await self.beat()
        finally:
            await unlock(self.r, self.keys, f"worker {self.id} joining")
        _say(
            f"serving generation {gen.number} ({gen.digest}) as {self.id} "
            f"on {self.kernel.loop_kind} + {self.server.http}"
        )

    def _serving(self, gen: Generation) -> None:
        self._gen = gen
        self.generation = gen.number
        self.state = "serving"
        if self.metrics is not None:
            self.metrics.serving(gen.number)

    def _on_event(self, event: Any) -> None:
        if self.metrics is not None:
            self.metrics.on_event(event)

    # -- proposals -----------------------------------------------------------------------

    async def listen(self) -> None:
        """Follow the fleet's channel; reconnect (and catch up on decisions) after a failure."""
        delay = 0.05
        while not self.stopping.is_set():
            pubsub = self.r.pubsub()
            try:
                await pubsub.subscribe(self.keys.channel)
                delay = 0.05
                await self._catch_up()
                while not self.stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._dispatch(json.loads(message["data"]))
            except Exception as exc:
                if self.stopping.is_set():
                    return
                self.last_error = f"Redis: {describe(exc)}"
                await asyncio.sleep(delay)  # reconnect backoff
                delay = min(delay * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _catch_up(self) -> None:
        for gen, future in list(self._decisions.items()):
            outcome = await self.r.get(self.keys.decision(gen))
            if outcome and not future.done():
                future.set_result(outcome)

    def _dispatch(self, data: dict[str, Any]) -> None:
        kind, gen = data.get("type"), data.get("gen")
        if kind == "propose" and gen == self.generation + 1:
            task = asyncio.ensure_future(self._prepare(gen))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "decide" and gen in self._decisions:
            future = self._decisions[gen]
            if not future.done():
                future.set_result(data["outcome"])

    async def _prepare(self, number: int) -> None:
        async with self._busy:
            if number != self.generation + 1:
                return
            gen = Generation.from_hash(await self.r.hgetall(self.keys.generation(number)))
            self._decisions[number] = asyncio.get_running_loop().create_future()
            self.state = f"preparing {number}"
            prepared = None
            try:
                try:
                    prepared = await prepare(self.kernel, gen, self.plugins)
                    vote = Vote(True)
                except Exception as exc:  # rolled back already; the fleet must hear why
                    vote = vote_for(exc, gen.action.get("plugin") or gen.action.get("path"))
                    self.last_error = f"generation {number}: {vote.error}"
                self.state = f"ready {number}" if vote.ok else "serving"
                await self._send_vote(number, vote)
                try:
                    outcome = await self._outcome(number) if vote.ok else "abort"
                except Exception as exc:  # the register cannot be read: undecidable here
                    if prepared is not None:
                        await prepared.aabort()
                    self._rejoin(f"the outcome of generation {number} is unknown ({exc})")
                    return
            except BaseException:
                if prepared is not None:
                    await prepared.aabort()
                raise
            finally:
                self._decisions.pop(number, None)
            if prepared is not None and outcome == "commit":
                await self._commit(prepared, gen)
            else:
                if prepared is not None:
                    await prepared.aabort()
                self.state = "serving"
            await self._retry(self.beat)

    async def _commit(self, prepared: Any, gen: Generation) -> None:
        """Commit, announcing ``swapped`` at the swap itself (its ``reloaded`` event), not
        after the old generation drained and stopped."""
        loop = asyncio.get_running_loop()
        swapped = asyncio.Event()
        at: list[float] = []

        def on_event(event: Any) -> None:  # on the kernel's thread
            if event.kind == "reloaded" and not at:
                at.append(time.time())
                loop.call_soon_threadsafe(swapped.set)

        unsubscribe = self.kernel.subscribe(on_event)
        commit = asyncio.ensure_future(prepared.acommit())
        waiter = asyncio.ensure_future(swapped.wait())
        try:
            await asyncio.wait({commit, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if commit.done():
                commit.result()  # a commit that failed before its swap raises here
            self._serving(gen)
            await self._retry(self.beat)  # status agrees with "swapped" once it is announced
            await self._retry(self._announce_swap, gen.number, at[0] if at else time.time())
            await commit
        finally:
            waiter.cancel()
            unsubscribe()

    async def _send_vote(self, number: int, vote: Vote) -> None:
        payload = json.dumps(vote.to_dict())
        await self._retry(self.r.hset, self.keys.votes(number), self.id, payload)
        message = json.dumps(
            {"type": "vote", "gen": number, "worker": self.id, "vote": vote.to_dict()}
        )
        await self._retry(self.r.publish, self.keys.channel, message)

    async def _announce_swap(self, number: int, at: float) -> None:
        await self.r.sadd(self.keys.swapped(number), self.id)
        message = {"type": "swapped", "gen": number, "worker": self.id, "at": at}
        await self.r.publish(self.keys.channel, json.dumps(message))

    async def _outcome(self, number: int) -> str:
        """The fleet's decision; past the deadline, this worker aborts it (write-once)."""
        future = self._decisions[number]
        try:
            outcome = await self.r.get(self.keys.decision(number))
            if outcome:
                return outcome
        except Exception:
            pass
        try:
            return await asyncio.wait_for(asyncio.shield(future), DECISION_PATIENCE)
        except TimeoutError:
            return await self._retry(decide, self.r, self.keys, number, "abort")

    async def _retry(self, fn: Any, *args: Any, patience: float = 60.0) -> Any:
        """``fn(*args)``, retried while Redis is unreachable (a restart), up to ``patience``."""
        deadline = time.monotonic() + patience
        delay = 0.05
        while True:
            try:
                return await fn(*args)
            except Exception as exc:
                if time.monotonic() > deadline or not exc.__class__.__module__.startswith("redis"):
                    raise
                await asyncio.sleep(delay)  # reconnect backoff
                delay = min(delay * 2, 1.0)

    # -- the process ---------------------------------------------------------------------

    async def run(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from ._metrics import Metrics

            self.metrics = Metrics(self.id)
        self._use_redis_buckets()
        try:
            await self.join(sock)
            print(f"ready {self.id}", flush=True)  # the supervisor waits for this line
            tasks = [asyncio.ensure_future(self.heartbeats()), asyncio.ensure_future(self.listen())]
            await self.stopping.wait()
            self.state = "stopping"
            for task in tasks:
                task.cancel()
        finally:
            await self._stop()

    def _use_redis_buckets(self) -> None:
        if self.args.local_limits:
            return  # each worker its own buckets: what sharing changes, measured
        from ..plugins import _ratelimit
        from ._ratestore import RedisBucketStore

        url, keys, policy = self.args.redis, self.keys, self.args.rate_limit_policy
        _ratelimit.use_store(lambda config: RedisBucketStore(url, keys, config, policy=policy))

    async def _stop(self) -> None:
        try:
            if self.server is not None:
                await self.server.astop()
            if self.kernel is not None:
                await self.kernel.aclose()
        finally:
            shutil.rmtree(self.plugins, ignore_errors=True)
            try:
                await self.r.delete(self.keys.worker(self.id))
                await self.r.aclose()
            except Exception:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helixlab.fleet._worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--fleet", default="helixlab")
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--rate-limit-policy", default="open")
    parser.add_argument("--plugins", help="a plugins directory to discover first")
    parser.add_argument("--local-limits", action="store_true", help="per-worker rate buckets")
    parser.add_argument("--verify", action="store_true", help="probe each reload (a canary)")
    parser.add_argument("--no-entry-points", dest="entry_points", action="store_false")
    parser.add_argument("--loop", choices=LOOPS, default="auto", help="the event loops' kind")
    parser.add_argument("--http", choices=HTTP_PARSERS, default="auto", help="the HTTP parser")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    worker = Worker(args)
    try:  # the Redis loop (here) and the kernel's (serving) are both of the kind asked
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            runner.run(worker.run(sock))
    except HelixError as exc:
        _say(str(exc))
        return 1
    return worker.exit_code


if __name__ == "__main__":
    sys.exit(main())
