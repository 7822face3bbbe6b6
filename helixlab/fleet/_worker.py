"""One worker process of a fleet: a Kernel and its gateway on the fleet's shared socket.

It joins under the fleet's lock: it loads the *committed* generation (the first worker of
a fleet founds the first generation from its config file), starts serving, and
heartbeats before it lets the next worker or reload in. Then it answers proposals: it
prepares each one aside, votes through Redis, and commits or aborts as the fleet decides.

It runs a generation only with the fleet key's signature on it and on the decision that
committed it (``commit:{id}``; ``committed`` and ``decision:*`` are plain Redis writes), and
never one below its high-water mark: the highest committed generation it, or any worker
its supervisor started before it, served (files in ``$HELIXLAB_FLEET_HIGH_WATER_DIR``, in
the supervisor's private directory). A ``committed`` that goes back is refused, said, and
the worker keeps serving; a Redis restored from an older snapshot is followed only after
the supervisor is restarted (see docs/architecture.md, "The fleet").

Its heartbeat is a lease (a key with a TTL, renewed only while it exists): a worker that
was paused past it has been counted out of the fleet, so it commits nothing it prepared
before (it aborts it) and converges on the committed generation instead. Every
generation it runs is checked against the fleet key first (see ``_signing``).

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
import uuid
from pathlib import Path
from typing import Any

from .._net import HTTP_PARSERS
from ..errors import FleetError, HelixError, describe
from ..kernel import LOOPS, loop_factory
from ._apply import Vote, prepare, vote_for
from ._coordinator import LOG_LENGTH, decide, lock, next_id, unlock
from ._generation import Generation, read_sources, write_sources
from ._operations import FleetOperations
from ._redis import Keys, client

__all__ = ["Worker", "main", "worker_id"]

ADMIN_KEY_VARIABLE = "HELIXLAB_ADMIN_KEY"  # as `helixlab serve` reads it
WORKER_ID_VARIABLE = "HELIXLAB_WORKER_ID"  # the supervisor names its workers
HIGH_WATER_VARIABLE = "HELIXLAB_FLEET_HIGH_WATER_DIR"  # the supervisor's high-water marks
EXIT_REJOIN = 3  # a worker that cannot know the fleet's generation restarts to rejoin it
HEARTBEAT_TTL = 3.0  # seconds a worker stays in the quorum without a heartbeat (its lease)
DECISION_PATIENCE = 45.0  # seconds a prepared worker waits for the outcome, then aborts it

# KEYS: the worker's key; ARGV: info, ttl ms, new. Renews the lease only while it holds
# (0: it lapsed, the worker was counted out); ``new`` takes a fresh one.
BEAT = """
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the worker's key, gen:{id}; ARGV: info, ttl ms, the signature prepared. Before a
# commit: the lease renewed only if it held, and the generation still the one prepared.
FENCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lapsed' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('HGET', KEYS[2], 'sig') ~= ARGV[3] then return 'changed' end
return 'ok'
"""

# KEYS: committed, gen:{g}, seq, history, commit:{g}; ARGV: g, its signed commit
# decision, and the generation's hash as pairs. A Redis that lost the fleet's records (no
# persistence, FLUSHALL, eviction) learns them back from a worker serving the committed
# generation.
REASSERT = """
local committed = redis.call('GET', KEYS[1])
if not committed then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('LPUSH', KEYS[4], ARGV[1])
  committed = ARGV[1]
end
if committed == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
end
if committed == ARGV[1] and ARGV[2] ~= '' and redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('SET', KEYS[5], ARGV[2])
end
if tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[3], ARGV[1])
end
return committed
"""


# KEYS: committed, gen:{g}, seq, history, commit:{g}; ARGV: the committed id read, g, its
# signed commit decision, and the generation's hash as pairs. Points ``committed`` back at
# g, the highest generation the fleet committed (signed), if it still holds what was read:
# a pointer rolled back, or naming a generation without a signed commit, is repaired.
REPAIR = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('HSET', KEYS[2], unpack(ARGV, 4)) end
redis.call('SET', KEYS[5], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[3], ARGV[2])
end
return 1
"""


def _say(text: str) -> None:
    print(f"helixlab worker {os.getpid()}: {text}", file=sys.stderr, flush=True)


def _high_water_dir() -> Path | None:
    given = os.environ.get(HIGH_WATER_VARIABLE)
    return Path(given) if given else None


def high_water() -> int:
    """The highest committed generation any worker of this supervisor served (0: none)."""
    directory = _high_water_dir()
    best = 0
    if directory is not None and directory.is_dir():
        for path in directory.iterdir():
            with contextlib.suppress(OSError, ValueError):
                best = max(best, int(path.read_text().strip() or 0))
    return best


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
        self.generation = 0
        self.high_water = high_water()  # never serve a generation below it
        self._gen: Generation | None = None
        self._commit_sig = ""  # the signed decision that committed what it serves
        self.state = "joining"
        self.last_error: str | None = None
        self.started = time.time()
        self.kernel: Any = None
        self.server: Any = None
        self.metrics: Any = None
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.lease = 0  # bumped each time the lease lapsed: what was prepared under it is void
        self._beat_ok = 0.0  # monotonic time of the last renewed lease
        self._seen: set[int] = set()  # proposals already considered
        self._woken = asyncio.Event()  # a decision was logged
        self._outcomes: dict[int, str] = {}  # decisions read from the log
        self._busy = asyncio.Lock()
        self._draining: asyncio.Future | None = None
        self._converging: asyncio.Future | None = None
        self._tasks: set[asyncio.Task] = set()
        self.cursor = "0-0"
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
            "digest": self._gen.digest if self._gen else None,
            "state": self.state,
            "last_error": self.last_error,
            "started": self.started,
            "requests": self.metrics.served if self.metrics else None,
            "errors": self.metrics.errors if self.metrics else None,
            "at": time.time(),
        }

    async def beat(self, new: bool = False) -> bool:
        """Renew the lease; False (and a new lease taken) when it had lapsed."""
        ttl = int(HEARTBEAT_TTL * 1000)
        info = json.dumps(self.info())
        held = await self.r.eval(BEAT, 1, self.keys.worker(self.id), info, ttl, "1" if new else "0")
        if not held or time.monotonic() - self._beat_ok > HEARTBEAT_TTL:
            if not new:
                self.lease += 1
                _say("my lease lapsed (paused, or Redis lost it): rejoining the quorum")
                await self.r.eval(BEAT, 1, self.keys.worker(self.id), info, ttl, "1")
            held = new
        self._beat_ok = time.monotonic()
        return bool(held)

    async def heartbeats(self) -> None:
        parent = os.getppid()
        while not self.stopping.is_set():
            if os.getppid() != parent:  # the supervisor died (kill -9): do not linger
                _say("the supervisor is gone; stopping")
                self.stopping.set()
                return
            try:
                await self.beat()
                if self.state == "serving" and not self._busy.locked():
                    await self._reassert()
                    if self._converging is None or self._converging.done():
                        # a task: a catch-up's prepare must not hold up the heartbeat
                        self._converging = asyncio.ensure_future(self._converge())
                    proposal = await self.r.get(self.keys.proposal)
                    if proposal:  # the register, in case the stream missed it
                        self._consider_soon(int(proposal))
            except Exception as exc:  # Redis restarting: keep serving, beat again soon
                self.last_error = f"heartbeat: {describe(exc)}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), HEARTBEAT_TTL / 3)

    async def _reassert(self) -> None:
        """A Redis that lost the committed generation learns it back (see REASSERT)."""
        gen = self._gen
        if gen is None:
            return
        pairs = [x for item in gen.to_hash().items() for x in item]
        await self.r.eval(
            REASSERT,
            5,
            self.keys.committed,
            self.keys.generation(gen.number),
            self.keys.seq,
            self.keys.history,
            self.keys.commit(gen.number),
            str(gen.number),
            self._commit_sig,
            *pairs,
        )

    async def _refuse(self, why: str, seen: str) -> None:
        """Keep serving what it serves, say why (once per reason), and point ``committed``
        (still ``seen``) back at the generation it serves, whose commit it holds signed."""
        if self.last_error != why:
            _say(f"{why}; still serving generation {self.generation}")
        self.last_error = why
        gen = self._gen
        if gen is None or not self._commit_sig or gen.number < self.high_water:
            return
        pairs = [x for item in gen.to_hash().items() for x in item]
        repaired = await self.r.eval(
            REPAIR,
            5,
            self.keys.committed,
            self.keys.generation(gen.number),
            self.keys.seq,
            self.keys.history,
            self.keys.commit(gen.number),
            seen,
            str(gen.number),
            self._commit_sig,
            *pairs,
        )
        if repaired:
            _say(f"pointed the fleet's committed generation back at {gen.number}")

    async def _commit_signature(self, gen: Generation) -> str:
        """The signed decision that committed ``gen``; FleetError when it is not the fleet
        key's (or missing: an aborted proposal, or a write to Redis)."""
        signature = await self.r.get(self.keys.commit(gen.number))
        gen.check_commit(self.key, self.keys.fleet, signature)
        return signature

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
                gen.check(self.key, self.keys.fleet)
                signatures.append(await self._commit_signature(gen))
            except FleetError as exc:  # not the fleet key's: keep serving the last good one
                await self._refuse(str(exc), committed)
                return
        for gen, signature in zip(reversed(chain), signatures, strict=True):
            self.state = f"catching up {gen.number}"
            try:
                prepared = await prepare(self.kernel, gen, self.plugins)
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
        from ..gateway import gateway_config
        from ..kernel import Kernel, parse_config

        owner = f"worker {self.id} joining"
        await lock(self.r, self.keys, owner, timeout=120)
        try:
            # the log from here on: what is proposed after this join is read in order
            last = await self.r.xrevrange(self.keys.stream, count=1)
            self.cursor = last[0][0] if last else "0-0"
            committed = await self.r.get(self.keys.committed)
            deadline = time.monotonic() + 2 * HEARTBEAT_TTL
            while committed is None and self.high_water and time.monotonic() < deadline:
                # a Redis that lost the fleet's records: its live workers store them back
                await asyncio.sleep(0.1)  # within a heartbeat (no event to wait on)
                committed = await self.r.get(self.keys.committed)
            if committed is None:
                with open(self.args.config, encoding="utf-8") as f:
                    text = f.read()
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
                from ._signing import sign_commit

                commit_sig = sign_commit(self.key, self.keys.fleet, number, gen.digest)
                await self.r.hset(self.keys.generation(number), mapping=gen.to_hash())
                await self.r.set(self.keys.commit(number), commit_sig)
                await self.r.set(self.keys.committed, number)
                await self.r.lpush(self.keys.history, number)
            else:
                from ._coordinator import committed_generation

                gen = await committed_generation(self.r, self.keys, patience=2 * HEARTBEAT_TTL)
                gen.check(self.key, self.keys.fleet)  # refuses, saying why: exit 1
                commit_sig = await self._commit_signature(gen)
                if gen.number < self.high_water:
                    gen, commit_sig = await self._join_high_water(gen)
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
                _say(f"failed {name} in {error.phase}: {self.kernel.mask(str(error))}")
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
            self._serving(gen, commit_sig)
            await self.beat(new=True)
        finally:
            with contextlib.suppress(Exception):  # Redis gone for good: the lock expires
                await unlock(self.r, self.keys, owner, patience=10.0)
        _say(
            f"serving generation {gen.number} ({gen.digest}) as {self.id} "
            f"on {self.kernel.loop_kind} + {self.server.http}"
        )

    async def _join_high_water(self, committed: Generation) -> tuple[Generation, str]:
        """Redis names a generation below this supervisor's high-water mark: join on the
        high-water one instead if Redis still holds it with its signed commit (and point
        ``committed`` back at it), else refuse, saying what to do."""
        number = self.high_water
        stored = await self.r.hgetall(self.keys.generation(number))
        try:
            if not stored:
                raise FleetError(f"generation {number} is no longer in Redis")
            gen = Generation.from_hash(stored, number)
            gen.check(self.key, self.keys.fleet)
            commit_sig = await self._commit_signature(gen)
        except FleetError as exc:
            raise FleetError(
                f"Refusing to join the fleet {self.keys.fleet!r} on its committed generation "
                f"{committed.number}: it already committed generation {number} ({exc}; Redis "
                f"rolled back, or a write to it). To follow a Redis restored from an older "
                f"snapshot, restart the supervisor."
            ) from None
        _say(
            f"Refusing the fleet's committed generation {committed.number}: this fleet "
            f"already committed generation {number}; joining on {number}"
        )
        pairs = [x for item in gen.to_hash().items() for x in item]
        await self.r.eval(
            REPAIR,
            5,
            self.keys.committed,
            self.keys.generation(number),
            self.keys.seq,
            self.keys.history,
            self.keys.commit(number),
            str(committed.number),
            str(number),
            commit_sig,
            *pairs,
        )
        return gen, commit_sig

    def _serving(self, gen: Generation, commit_sig: str) -> None:
        self._seen = {n for n in self._seen if n > gen.number}
        self._outcomes = {n: o for n, o in self._outcomes.items() if n > gen.number}
        self._gen = gen
        self._commit_sig = commit_sig
        self.generation = gen.number
        self._raise_high_water(gen.number)
        self.state = "serving"
        if self.metrics is not None:
            self.metrics.serving(gen.number)

    def _raise_high_water(self, number: int) -> None:
        """Record ``number`` as served, for this worker and the ones its supervisor starts
        after it (one file per worker: no two writers)."""
        self.high_water = max(self.high_water, number)
        directory = _high_water_dir()
        if directory is None:
            return
        with contextlib.suppress(OSError):
            tmp = directory / f".{self.id}.tmp"
            tmp.write_text(str(self.high_water))
            tmp.replace(directory / self.id)

    def _on_event(self, event: Any) -> None:
        if self.metrics is not None:
            self.metrics.on_event(event)

    # -- proposals -----------------------------------------------------------------------

    async def listen(self) -> None:
        """Read the fleet's stream from the last entry seen (a paused or reconnecting worker
        misses nothing); reconnect after a failure."""
        delay = 0.05
        while not self.stopping.is_set():
            try:
                entries = await self.r.xread({self.keys.stream: self.cursor}, block=1000, count=100)
                delay = 0.05
                for _, items in entries or ():
                    for entry_id, fields in items:
                        self.cursor = entry_id
                        self._dispatch(json.loads(fields["data"]))
            except Exception as exc:
                if self.stopping.is_set():
                    return
                self.last_error = f"Redis: {describe(exc)}"
                await asyncio.sleep(delay)  # reconnect backoff
                delay = min(delay * 2, 1.0)

    def _dispatch(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "propose" and isinstance(data.get("gen"), int):
            self._consider_soon(data["gen"])
        elif kind == "decide":
            if isinstance(data.get("gen"), int) and data.get("outcome"):
                # written by the same script as the register: no second read needed
                self._outcomes[data["gen"]] = data["outcome"]
            self._woken.set()

    def _consider_soon(self, number: int) -> None:
        if number in self._seen or number <= self.generation:
            return
        self._seen.add(number)
        task = asyncio.ensure_future(self._consider(number))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consider(self, number: int) -> None:
        if self._draining is not None and not self._draining.done():
            with contextlib.suppress(Exception):  # the proposer's report says why it waits
                await self.r.hset(
                    self.keys.notes(number), self.id, f"busy: draining generation {self.generation}"
                )
        async with self._busy:
            stored = await self.r.hgetall(self.keys.generation(number))
            if not stored or await self.r.get(self.keys.decision(number)):
                return  # gone, or decided already (without this worker)
            try:
                gen = Generation.from_hash(stored, number)
            except FleetError as exc:  # another generation's hash under this number
                self.last_error = str(exc)
                _say(str(exc))
                await self._send_vote(number, Vote(False, None, "verify", str(exc)))
                return
            if gen.parent > self.generation:  # a commit made without this worker: catch up
                await self._converge_locked()
            if gen.parent != self.generation:  # say so now, rather than let it time out
                why = f"this worker serves generation {self.generation}, not {gen.parent}"
                await self._send_vote(number, Vote(False, None, "prepare", why))
                return
            await self._prepare(gen)

    async def _prepare(self, gen: Generation) -> None:
        number, lease = gen.number, self.lease
        self.state = f"preparing {number}"
        prepared = None
        try:
            try:
                gen.check(self.key, self.keys.fleet)
                prepared = await prepare(self.kernel, gen, self.plugins)
                vote = Vote(True)
            except FleetError as exc:  # not signed by the fleet key: refused, and said so
                vote = Vote(False, None, exc.phase or "verify", str(exc))
                self.last_error = str(exc)
                _say(str(exc))
            except Exception as exc:  # rolled back already; the fleet must hear why
                vote = vote_for(exc, gen.action.get("plugin") or gen.action.get("path"))
                self.last_error = f"generation {number}: {vote.error}"
            self.state = f"ready {number}" if vote.ok else "serving"
            await self._send_vote(number, vote)
            try:
                outcome = await self._outcome(gen) if vote.ok else "abort"
            except Exception as exc:  # the register cannot be read: undecidable here
                if prepared is not None:
                    await prepared.aabort()
                self._rejoin(f"the outcome of generation {number} is unknown ({exc})")
                return
            signature = ""
            if prepared is not None and outcome == "commit":
                try:
                    signature = await self._commit_signature(gen)
                    why = await self._fenced(gen, lease)
                except FleetError as exc:  # "commit" in Redis, but not the proposer's
                    why = str(exc)
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
            await self._retry(self.beat)

    async def _fenced(self, gen: Generation, lease: int) -> str | None:
        """Why this worker must not commit what it prepared for ``gen`` (None: it may):
        its lease renewed and the generation's signature read back in one script."""
        ttl = int(HEARTBEAT_TTL * 1000)
        held = await self.r.eval(
            FENCE,
            2,
            self.keys.worker(self.id),
            self.keys.generation(gen.number),
            json.dumps(self.info()),
            ttl,
            gen.sig,
        )
        if held == "changed":
            return f"generation {gen.number} in Redis is no longer the one prepared"
        if held != "ok" or time.monotonic() - self._beat_ok > HEARTBEAT_TTL:
            await self.beat()  # records the lapse and takes a new lease
            return "this worker's lease lapsed since it voted"
        self._beat_ok = time.monotonic()
        if self.lease != lease:
            return "this worker's lease lapsed since it voted"
        return None

    async def _commit(self, prepared: Any, gen: Generation, commit_sig: str) -> None:
        """Commit, announcing ``swapped`` at the swap itself (its ``reloaded`` event); the
        old generation drains in the background, so the next proposal gets a vote (its
        prepare waits for the drain) instead of no answer."""
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
        except BaseException:
            unsubscribe()
            raise
        finally:
            waiter.cancel()
        self._serving(gen, commit_sig)
        self._draining = commit
        commit.add_done_callback(lambda _: unsubscribe())
        commit.add_done_callback(self._drained)
        with contextlib.suppress(Exception):
            await self._retry(self.beat)  # status agrees with "swapped" once it is announced
            await self._retry(self._announce_swap, gen.number, at[0] if at else time.time())

    def _drained(self, commit: asyncio.Future) -> None:
        if not commit.cancelled() and commit.exception() is not None:
            self.last_error = f"drain: {describe(commit.exception())}"

    async def _send_vote(self, number: int, vote: Vote) -> None:
        payload = json.dumps({**vote.to_dict(), "gen": number})
        message = {"type": "vote", "gen": number, "worker": self.id}
        await self._retry(self._record, self.keys.votes(number), payload, message)

    async def _announce_swap(self, number: int, at: float) -> None:
        message = {"type": "swapped", "gen": number, "worker": self.id}
        await self._record(self.keys.swapped(number), repr(at), message)

    async def _record(self, register: str, value: str, message: dict[str, Any]) -> None:
        """This worker's field of ``register``, then the log entry that wakes readers up
        (one round trip)."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(register, self.id, value)
            pipe.xadd(
                self.keys.stream, {"data": json.dumps(message)}, maxlen=LOG_LENGTH, approximate=True
            )
            await pipe.execute()

    async def _outcome(self, gen: Generation) -> str:
        """The fleet's decision on exactly this proposal; past the deadline, this worker
        aborts it (write-once: a commit written first still holds)."""
        deadline = time.monotonic() + DECISION_PATIENCE
        while time.monotonic() < deadline:
            self._woken.clear()
            if gen.number in self._outcomes:
                return self._outcomes[gen.number]
            with contextlib.suppress(Exception):
                outcome = await self.r.get(self.keys.decision(gen.number))
                if outcome:
                    return outcome
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 0.5)
        return await self._retry(decide, self.r, self.keys, gen.number, "abort", gen.parent)

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
            for task in [*tasks, *self._tasks, *([self._converging] if self._converging else [])]:
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
