"""One worker process of a fleet: a Kernel and its gateway on the fleet's shared socket.

It joins under the fleet's lock: it loads the *committed* generation (the first worker of
a fleet founds the first generation from its config file), starts serving, and takes its
heartbeat lease (``_lease``) before it lets the next worker or reload in. Then it answers
proposals (``_voting``): it prepares each one aside (``_apply``), votes, and commits or
aborts as the fleet decides; and each heartbeat it converges on the committed generation.
It runs only generations signed with the fleet key and committed by a signed decision,
and never one below its high-water mark (``_repair``). See docs/architecture.md, "The
fleet".

Started by the supervisor as ``python -m helixlab.fleet._worker``, with the listening
socket inherited as a file descriptor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .._net import HTTP_PARSERS
from ..errors import FleetError, HelixError, describe
from ..kernel import LOOPS, Kernel, loop_factory, mask
from ._apply import Vote, commit, prepare, subject, vote_for
from ._coordinator import check_committed, committed_generation, lock, next_id, unlock
from ._generation import Generation, read_sources
from ._lease import HEARTBEAT_TTL, Lease
from ._redis import Keys, client, retrying
from ._repair import (
    HIGH_WATER_VARIABLE,
    high_water,
    join_high_water,
    raise_high_water,
    reassert,
    repair,
)
from ._serving import load, serve, use_redis_buckets
from ._voting import Voting

__all__ = ["HIGH_WATER_VARIABLE", "Worker", "main", "worker_id"]

WORKER_ID_VARIABLE = "HELIXLAB_WORKER_ID"  # the supervisor names its workers
EXIT_REJOIN = 3  # a worker that cannot know the fleet's generation restarts to rejoin it


def _say(text: str) -> None:
    """One line on stderr, masked (an exception's words may quote a configured secret)."""
    print(f"helixlab worker {os.getpid()}: {mask(text)}", file=sys.stderr, flush=True)


def worker_id() -> str:
    """This worker's id: the supervisor's name for it, else host, pid and a random part
    (containers sharing a hostname may share pids too)."""
    given = os.environ.get(WORKER_ID_VARIABLE)
    return given or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """The fleet side of one worker process (its Redis loop runs in the main thread)."""

    def __init__(self, args: argparse.Namespace):
        from ._signing import require_key

        self.args = args
        self.keys = Keys(args.fleet)
        self.key = require_key()  # the environment's (the supervisor passes it)
        self.id = worker_id()
        self.r = client(args.redis)
        self.lease = Lease(self.r, self.keys.worker(self.id))
        self.voting = Voting(self.r, self.keys, self.id)
        self.high_water = high_water()  # never serve a generation below it
        self.generation = 0
        self._gen: Generation | None = None
        self._commit_sig = ""  # the signed decision that committed what it serves
        self.state = "joining"
        self.last_error: str | None = None
        self.started = time.time()
        self.kernel: Kernel | None = None
        self.server: Any = None
        self.metrics: Any = None
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self._seen: set[int] = set()  # proposals already considered
        self._busy = asyncio.Lock()  # one proposal or catch-up at a time
        self._draining: asyncio.Future | None = None
        self._converging: asyncio.Future | None = None
        self._tasks: set[asyncio.Future] = set()
        self.plugins = Path(tempfile.mkdtemp(prefix="helixlab-worker-plugins-"))

    @property
    def _joined(self) -> Kernel:
        """The kernel serving (proposals and catch-ups are heard only once it serves)."""
        if self.kernel is None:
            raise FleetError(f"worker {self.id} has not joined its fleet yet")
        return self.kernel

    # -- heartbeat ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slot": self.args.slot,
            "url": self.server.url if self.server else None,
            "generation": self.generation,
            "digest": self._gen.digest if self._gen else None,
            "state": self.state,
            "last_error": mask(self.last_error),  # read back by `helixlab fleet status`
            "started": self.started,
            "requests": self.metrics.served if self.metrics else None,
            "errors": self.metrics.errors if self.metrics else None,
            "at": time.time(),
        }

    async def beat(self) -> None:
        if not await self.lease.renew(self.info()):
            _say("my lease lapsed (paused, or Redis lost it): rejoining the quorum")

    async def heartbeats(self) -> None:
        parent = os.getppid()
        while not self.stopping.is_set():
            if os.getppid() != parent:  # the supervisor died (kill -9): do not linger
                _say("the supervisor is gone; stopping")
                self.stopping.set()
                return
            try:
                await self.beat()
                if self.state == "serving" and not self._busy.locked() and self._gen:
                    await reassert(self.r, self.keys, self._gen, self._commit_sig)
                    if self._converging is None or self._converging.done():
                        # a task: a catch-up's prepare must not hold up the heartbeat
                        self._converging = asyncio.ensure_future(self._converge())
                    proposal = await self.r.get(self.keys.proposal)
                    if proposal:  # the register, in case the log missed it
                        self._consider_soon(int(proposal))
            except Exception as exc:  # Redis restarting: keep serving, beat again soon
                self.last_error = f"heartbeat: {describe(exc)}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), HEARTBEAT_TTL / 3)

    # -- converging on the committed generation ------------------------------------------

    async def _refuse(self, why: str, seen: str) -> None:
        """Keep serving what it serves, say why (once per reason), and point ``committed``
        (still ``seen``) back at the generation it serves, whose commit it holds signed."""
        if self.last_error != why:
            _say(f"{why}; still serving generation {self.generation}")
        self.last_error = why
        gen = self._gen
        if gen is None or not self._commit_sig or gen.number < self.high_water:
            return
        if await repair(self.r, self.keys, seen, gen, self._commit_sig):
            _say(f"pointed the fleet's committed generation back at {gen.number}")

    async def _converge(self) -> None:
        """Serve the committed generation: catch up along its parents, else rejoin."""
        try:
            async with self._busy:
                await self._converge_locked()
        except Exception as exc:  # Redis restarting: the next heartbeat tries again
            self.last_error = f"converging: {describe(exc)}"
            self.state = "serving"

    async def _converge_locked(self) -> None:
        committed = await self.r.get(self.keys.committed)
        if committed is None or self._gen is None:
            return
        target = int(committed)
        floor = max(self.generation, self.high_water)
        if target < floor:  # a rollback of the pointer: old generations stay signed
            await self._refuse(
                f"Refusing the fleet's committed generation {target}: this fleet already "
                f"committed generation {floor} (Redis rolled back, or a write to it; to "
                f"follow a Redis restored from an older snapshot, restart the supervisor)",
                committed,
            )
            return
        if target == self.generation:
            digest = await self.r.hget(self.keys.generation(target), "digest")
            if digest and digest != self._gen.digest:
                self._rejoin(f"generation {target} in Redis is not what this worker serves")
            return
        chain: list[Generation] = []
        number = target
        while number != self.generation:
            stored = await self.r.hgetall(self.keys.generation(number))
            if not stored or number < self.generation:
                self._rejoin(f"generation {number} is no longer kept; loading {target}")
                return
            chain.append(Generation.from_hash(stored, number))  # FleetError: keep serving
            if chain[-1].parent >= number:
                self._rejoin(f"generation {number} names a later parent ({chain[-1].parent})")
                return
            number = chain[-1].parent
        signatures = []
        for gen in reversed(chain):  # all of it checked before any of it runs
            try:
                signatures.append(await check_committed(self.r, self.keys, gen, self.key))
            except FleetError as exc:  # not the fleet key's: keep serving the last good one
                await self._refuse(str(exc), committed)
                return
        for gen, signature in zip(reversed(chain), signatures, strict=True):
            self.state = f"catching up {gen.number}"
            try:
                prepared = await prepare(self._joined, gen, self.plugins)
            except Exception as exc:
                self._rejoin(f"generation {gen.number} failed here while catching up: {exc}")
                return
            await self._commit(prepared, gen, signature)
        self.state = "serving"

    def _rejoin(self, why: str) -> None:
        """Exit with status 3: the supervisor restarts this worker on the committed generation."""
        _say(f"rejoining the fleet: {why}")
        self.last_error = why
        self.exit_code = EXIT_REJOIN
        self.stopping.set()

    # -- joining -------------------------------------------------------------------------

    async def join(self, sock: socket.socket) -> None:
        owner = f"worker {self.id} joining"
        await lock(self.r, self.keys, owner, timeout=120)
        try:
            # the log from here on: what is proposed after this join is read in order
            await self.voting.skip_to_end()
            gen, commit_sig = await self._committed_or_founded()
            self.kernel = Kernel(loop=self.args.loop)
            self.kernel.subscribe(self._on_event)
            report = await load(self.kernel, gen, self.plugins, self.args.entry_points)
            for name, error in report.failed.items():
                _say(f"failed {name} in {error.phase}: {self.kernel.mask(str(error))}")
            self.server = await serve(self.kernel, gen, sock, self.args, self.metrics)
            self._serving(gen, commit_sig)
            await self.lease.renew(self.info(), new=True)
        finally:
            with contextlib.suppress(Exception):  # Redis gone for good: the lock expires
                await unlock(self.r, self.keys, owner, patience=10.0)
        _say(
            f"serving generation {gen.number} ({gen.digest}) as {self.id} "
            f"on {self.kernel.loop_kind} + {self.server.http}"
        )

    async def _committed_or_founded(self) -> tuple[Generation, str]:
        """The generation to join on, with its signed commit: the committed one (or the
        high-water one, if Redis went back), else the fleet's first, founded here from the
        config file (refused below the high-water mark: a Redis that lost its records)."""
        committed = await self.r.get(self.keys.committed)
        deadline = time.monotonic() + 2 * HEARTBEAT_TTL
        while committed is None and self.high_water and time.monotonic() < deadline:
            # a Redis that lost the fleet's records: its live workers store them back
            await asyncio.sleep(0.1)  # within a heartbeat (no event to wait on)
            committed = await self.r.get(self.keys.committed)
        if committed is not None:
            gen = await committed_generation(self.r, self.keys, patience=2 * HEARTBEAT_TTL)
            commit_sig = await check_committed(self.r, self.keys, gen, self.key)  # else exit 1
            if gen.number < self.high_water:
                below = gen.number
                gen, commit_sig = await join_high_water(
                    self.r, self.keys, self.key, gen, self.high_water
                )
                _say(
                    f"Refusing the fleet's committed generation {below}: this fleet "
                    f"already committed generation {gen.number}; joining on {gen.number}"
                )
            return gen, commit_sig
        from ._signing import sign_commit

        text = Path(self.args.config).read_text(encoding="utf-8")
        sources = read_sources(self.args.plugins) if self.args.plugins else {}
        number = await next_id(self.r, self.keys)
        if number <= self.high_water:
            raise FleetError(
                f"Refusing to found the fleet {self.keys.fleet!r} anew at generation "
                f"{number}: it already committed generation {self.high_water} (its "
                f"Redis lost its records); restart the supervisor to start it afresh."
            )
        gen = Generation(
            number, text, self.args.config, proposed_by=self.id, sources=sources
        ).signed(self.key, self.keys.fleet)
        commit_sig = sign_commit(self.key, self.keys.fleet, number, gen.digest)
        await self.r.hset(self.keys.generation(number), mapping=gen.to_hash())
        await self.r.set(self.keys.commit(number), commit_sig)
        await self.r.set(self.keys.committed, number)
        await self.r.lpush(self.keys.history, number)
        return gen, commit_sig

    def _serving(self, gen: Generation, commit_sig: str) -> None:
        self._seen = {n for n in self._seen if n > gen.number}
        self.voting.forget_up_to(gen.number)
        self._gen = gen
        self._commit_sig = commit_sig
        self.generation = gen.number
        self.high_water = max(self.high_water, gen.number)
        raise_high_water(self.id, self.high_water)
        self.state = "serving"
        if self.metrics is not None:
            self.metrics.serving(gen.number)

    def _on_event(self, event: Any) -> None:
        if self.metrics is not None:
            self.metrics.on_event(event)

    # -- proposals -----------------------------------------------------------------------

    def _consider_soon(self, number: int) -> None:
        if number in self._seen or number <= self.generation:
            return
        self._seen.add(number)
        task = asyncio.ensure_future(self._consider(number))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consider(self, number: int) -> None:
        if self._draining is not None and not self._draining.done():
            await self.voting.note(number, f"busy: draining generation {self.generation}")
        async with self._busy:
            stored = await self.r.hgetall(self.keys.generation(number))
            if not stored or await self.r.get(self.keys.decision(number)):
                return  # gone, or decided already (without this worker)
            try:
                gen = Generation.from_hash(stored, number)
            except FleetError as exc:  # another generation's hash under this number
                self.last_error = str(exc)
                _say(str(exc))
                await self.voting.vote(number, Vote(False, None, "verify", str(exc)))
                return
            if gen.parent > self.generation:  # a commit made without this worker: catch up
                await self._converge_locked()
            if gen.parent != self.generation:  # say so now, rather than let it time out
                why = f"this worker serves generation {self.generation}, not {gen.parent}"
                await self.voting.vote(number, Vote(False, None, "prepare", why))
                return
            await self._prepare(gen)

    async def _prepare(self, gen: Generation) -> None:
        number, lease = gen.number, self.lease.number
        self.state = f"preparing {number}"
        prepared = None
        try:
            try:
                gen.check(self.key, self.keys.fleet)
                prepared = await prepare(self._joined, gen, self.plugins)
                vote = Vote(True)
            except FleetError as exc:  # not signed by the fleet key: refused, and said so
                vote = Vote(False, None, exc.phase or "verify", str(exc))
                self.last_error = str(exc)
                _say(str(exc))
            except Exception as exc:  # rolled back already; the fleet must hear why
                vote = vote_for(exc, subject(gen.change))
                self.last_error = f"generation {number}: {vote.error}"
            self.state = f"ready {number}" if vote.ok else "serving"
            await self.voting.vote(number, vote)
            try:
                outcome = await self.voting.outcome(gen) if vote.ok else "abort"
            except Exception as exc:  # the register cannot be read: undecidable here
                if prepared is not None:
                    await prepared.aabort()
                self._rejoin(f"the outcome of generation {number} is unknown ({exc})")
                return
            signature = ""
            if prepared is not None and outcome == "commit":
                try:
                    signature = await check_committed(self.r, self.keys, gen, self.key)
                    key = self.keys.generation(number)
                    why = await self.lease.fence(self.info(), lease, key, gen.sig)
                except FleetError as exc:  # "commit" in Redis, but not the proposer's
                    why = str(exc)
                except Exception as exc:  # Redis failed mid-check: undecidable here, as above
                    await prepared.aabort()
                    self._rejoin(f"the commit of generation {number} cannot be checked ({exc})")
                    return
                if why is not None:  # it stays the fleet's commit: catch up on it afresh
                    _say(f"not committing generation {number} as prepared: {why}")
                    outcome = "abort"
        except BaseException:
            if prepared is not None:
                await prepared.aabort()
            raise
        if prepared is not None and outcome == "commit":
            await self._commit(prepared, gen, signature)
        else:
            if prepared is not None:
                await prepared.aabort()
            self.state = "serving"
        with contextlib.suppress(Exception):
            await retrying(self.beat)

    async def _commit(self, prepared: Any, gen: Generation, commit_sig: str) -> None:
        """Commit, announcing ``swapped`` at the swap itself; the old generation drains in
        the background."""
        self._draining, at = await commit(self._joined, prepared)
        self._serving(gen, commit_sig)
        self._draining.add_done_callback(self._drained)
        with contextlib.suppress(Exception):
            await retrying(self.beat)  # status agrees with "swapped" once it is announced
            await self.voting.swapped(gen.number, at)

    def _drained(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.last_error = f"drain: {describe(task.exception())}"

    # -- the process ---------------------------------------------------------------------

    async def run(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from ._metrics import Metrics

            self.metrics = Metrics(self.id)
        use_redis_buckets(self.args)
        try:
            await self.join(sock)
            print(f"ready {self.id}", flush=True)  # the supervisor waits for this line
            tasks = [
                asyncio.ensure_future(self.heartbeats()),
                asyncio.ensure_future(
                    self.voting.listen(self.stopping, self._consider_soon, self._failed)
                ),
            ]
            await self.stopping.wait()
            self.state = "stopping"
            for task in [*tasks, *self._tasks, *([self._converging] if self._converging else [])]:
                task.cancel()
        finally:
            await self._stop()

    def _failed(self, why: str) -> None:
        self.last_error = why

    async def _stop(self) -> None:
        try:
            if self.server is not None:
                await self.server.astop()
            if self.kernel is not None:
                await self.kernel.aclose()
        finally:
            shutil.rmtree(self.plugins, ignore_errors=True)
            try:
                await self.lease.end()
                await self.r.aclose()
            except Exception:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helixlab.fleet._worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--fd", type=int, required=True)
    # the URL may hold a password: from the environment (the supervisor's way), not argv
    parser.add_argument("--redis", default=os.environ.get("HELIXLAB_REDIS"))
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
    if not args.redis:
        parser.error("the fleet's Redis: $HELIXLAB_REDIS (or --redis URL)")
    from ..kernel import mask_log_records  # every log line of this worker is masked

    mask_log_records()
    sock = socket.socket(fileno=args.fd)
    try:  # the Redis loop (here) and the kernel's (serving) are both of the kind asked
        worker = Worker(args)
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            runner.run(worker.run(sock))
    except HelixError as exc:
        _say(str(exc))
        return 1
    return worker.exit_code


if __name__ == "__main__":
    sys.exit(main())
