"""Proposing a generation to a fleet and deciding it: commit only when every live worker
is ready, else abort everywhere.

Every proposal gets a new id from an atomic counter (``INCR seq``; never reused, not even
after an abort), and everything about it is keyed by that id: its content
(``gen:{id}``, signed with the fleet key, with the ``parent`` generation it was proposed
on), the votes (``votes:{id}``), the decision (``decision:{id}``) and the swaps. A late
vote for an aborted proposal therefore cannot count for another one. The decision is a
write-once register written by one script (:data:`DECIDE`) that also moves ``committed``
from the parent to the new id, and only from the parent: two proposers whose lock
overlapped (one paused past its TTL) cannot both commit. Decisions are never deleted,
only expired a day after they stopped mattering.

Proposals, votes, decisions and swaps are also appended to a Redis Stream (``log``) that
workers read from the last id they saw: a worker that was paused or reconnecting reads
every step in order; the registers stay the truth, the stream wakes readers up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import FleetError
from ..kernel import Change
from ._generation import KEEP_GENERATIONS, Generation, configured_text
from ._redis import Keys, retrying
from ._wire import change_to_wire

__all__ = [
    "FleetReport",
    "check_committed",
    "decide",
    "live_workers",
    "lock",
    "log",
    "next_id",
    "propose",
    "unlock",
]

#: Entries the fleet's stream keeps (approximately): a reader further behind reads registers.
LOG_LENGTH = 2000
#: Seconds an outcome that no longer matters (aborted, or superseded) stays readable.
DECISION_AGE = 24 * 3600

# KEYS: decision, committed, proposal, log, commit; ARGV: outcome, id, parent, age, log
# length, the signed commit decision. Returns the outcome that holds (write-once); commit
# only moves committed from the parent, and writes the proposer's signature with it.
DECIDE = """
local held = redis.call('GET', KEYS[1])
if held then return held end
local outcome = ARGV[1]
if outcome == 'commit' and redis.call('GET', KEYS[2]) ~= ARGV[3] then outcome = 'abort' end
if outcome == 'commit' and (ARGV[6] or '') == '' then outcome = 'abort' end
redis.call('SET', KEYS[1], outcome)
if outcome == 'commit' then
  redis.call('SET', KEYS[5], ARGV[6])
  redis.call('SET', KEYS[2], ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data',
  cjson.encode({type='decide', gen=tonumber(ARGV[2]), outcome=outcome}))
return outcome
"""

# KEYS: seq, committed. The next id: above every id handed out and the committed one
# (a Redis that lost the counter but was told the committed generation back).
NEXT_ID = """
local n = redis.call('INCR', KEYS[1])
local c = tonumber(redis.call('GET', KEYS[2]) or '0')
if n <= c then n = c + 1; redis.call('SET', KEYS[1], n) end
return n
"""

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

LOCK_TTL_MS = 60_000


@dataclass
class FleetReport:
    """What a fleet reload did: the generation, its outcome, and each worker's answer."""

    generation: int
    action: str
    outcome: str = "pending"  # commit | abort
    votes: dict[str, dict[str, Any]] = field(default_factory=dict)
    swapped: list[str] = field(default_factory=list)
    swapped_at: dict[str, float] = field(default_factory=dict)  # worker -> when it swapped
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    parent: int = 0

    def __str__(self) -> str:
        lines = [f"generation {self.generation}: {self.action}: {self.outcome}"]
        for worker, vote in sorted(self.votes.items()):
            state = "ready" if vote.get("ok") else f"failed: {vote.get('error')}"
            lines.append(f"  {worker}: {state}")
        if self.timings:
            shown = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.timings.items())
            lines.append(f"  {shown}")
        return "\n".join(lines)


async def decide(
    r: Any, keys: Keys, gen: int, outcome: str, parent: int, signature: str = ""
) -> str:
    """Write ``outcome`` for proposal ``gen`` (proposed on ``parent``) if nobody has;
    returns the outcome that holds. A commit needs the proposer's ``signature`` (see
    ``_signing.sign_commit``): without one it is an abort."""
    return await r.eval(
        DECIDE,
        5,
        keys.decision(gen),
        keys.committed,
        keys.proposal,
        keys.stream,
        keys.commit(gen),
        outcome,
        str(gen),
        str(parent),
        DECISION_AGE,
        LOG_LENGTH,
        signature,
    )


async def check_committed(r: Any, keys: Keys, gen: Generation, key: bytes) -> str:
    """The signed decision that committed ``gen``; FleetError unless the fleet key signed
    both ``gen`` and that decision (``committed`` and ``decision:*`` are plain Redis writes:
    an aborted proposal has none)."""
    gen.check(key, keys.fleet)
    signature = await r.get(keys.commit(gen.number))
    gen.check_commit(key, keys.fleet, signature)
    return signature


async def next_id(r: Any, keys: Keys) -> int:
    """A generation id no proposal ever had (INCR, kept above the committed id)."""
    return int(await r.eval(NEXT_ID, 2, keys.seq, keys.committed))


async def log(r: Any, keys: Keys, message: dict[str, Any]) -> str:
    """Append ``message`` to the fleet's stream; its entry id."""
    return await r.xadd(
        keys.stream, {"data": json.dumps(message)}, maxlen=LOG_LENGTH, approximate=True
    )


async def live_workers(r: Any, keys: Keys) -> dict[str, dict[str, Any]]:
    """Every worker whose heartbeat has not expired, by id."""
    found = {}
    async for key in r.scan_iter(match=keys.workers_pattern, count=200):
        raw = await r.get(key)
        if raw:
            info = json.loads(raw)
            found[info["id"]] = info
    return found


async def lock(r: Any, keys: Keys, owner: str, timeout: float) -> None:
    """Take the fleet's lock (one proposal or join at a time) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not await r.set(keys.lock, owner, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() > deadline:
            holder = await r.get(keys.lock)
            raise FleetError(
                f"The fleet {keys.fleet!r} is busy: {holder} holds its lock (a reload or a "
                f"worker joining); retry, or wait {LOCK_TTL_MS // 1000}s for it to expire."
            )
        await asyncio.sleep(delay)  # a lock in Redis has no event to wait on
        delay = min(delay * 2, 0.1)


async def unlock(r: Any, keys: Keys, owner: str, patience: float = 0.0) -> None:
    """Release the lock if ``owner`` (the exact token) holds it; retried for ``patience``
    seconds while Redis is unreachable (a restart), so that a blip does not leave the
    fleet locked for the lock's whole TTL."""
    await retrying(r.eval, UNLOCK, 1, keys.lock, owner, patience=patience)


def _failure_message(report: FleetReport) -> tuple[str, str | None, str | None, str | None]:
    for worker, vote in sorted(report.votes.items()):
        if not vote.get("ok"):
            plugin, phase = vote.get("plugin"), vote.get("phase")
            message = (
                f"Fleet generation {report.generation} ({report.action}) rolled back on every "
                f"worker: worker {worker} failed"
                + (f", plugin {plugin!r} in {phase}" if plugin else f" in {phase}")
                + f": {vote.get('error')}"
            )
            return message, worker, plugin, phase
    message = f"Fleet generation {report.generation} ({report.action}) rolled back: {report.error}"
    return message, None, None, None


async def propose(
    r: Any,
    keys: Keys,
    change: Change,
    *,
    sources: dict[str, str] | None = None,
    timeout: float = 30.0,
    wait_swapped: bool = True,
    key: bytes | None = None,
) -> FleetReport:
    """Propose the next generation: ``change`` over the committed one (a ``define_file``
    change with the plugins directory's new ``sources``), signed with the fleet ``key``
    (default: :func:`~._signing.fleet_key`).

    Returns the report once every worker swapped; raises FleetError naming the worker,
    plugin and phase when the fleet rolled back, ValueError for a change that cannot
    travel (classes, a path on this host).
    """
    from ._signing import require_key

    change_to_wire(change)  # a change that cannot travel is refused before anything is written
    key = key or require_key(keys.fleet)
    owner = f"proposer {socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    await lock(r, keys, owner, timeout)
    try:
        return await _propose_locked(r, keys, change, sources, owner, timeout, wait_swapped, key)
    finally:
        with contextlib.suppress(Exception):  # Redis gone for good: the lock expires by itself
            await unlock(r, keys, owner, patience=10.0)


def _successor(
    base: Generation, change: Change, sources: dict[str, str] | None, number: int, owner: str
) -> Generation:
    """Generation ``number``: ``change`` made over ``base`` (unsigned)."""
    config, source = base.config, base.source
    if change.kind == "configure":  # the values stored as applied (see configured_text)
        config = configured_text(base.config, change.plugin, change.values)
    elif change.kind == "apply_config":
        if not isinstance(change.document, str):
            raise ValueError("A fleet applies a configuration as its YAML text.")
        config, source = change.document, change.source or base.source
    return Generation(
        number=number,
        config=config,
        source=source,
        change=change,
        proposed_by=owner,
        sources=sources if sources is not None else base.sources,
        parent=base.number,
    )


async def committed_generation(r: Any, keys: Keys, patience: float = 0.0) -> Generation:
    """The committed generation, read back whole (waiting up to ``patience`` seconds for a
    worker to re-store content that Redis lost). Raises FleetError if there is none."""
    deadline = time.monotonic() + patience
    while True:
        committed = await r.get(keys.committed)
        if committed is None:
            raise FleetError(f"No fleet named {keys.fleet!r} runs on this Redis (no generation).")
        stored = await r.hgetall(keys.generation(int(committed)))
        if stored:
            return Generation.from_hash(stored, int(committed))
        if time.monotonic() > deadline:
            raise FleetError(
                f"The content of the fleet's committed generation {committed} is missing from "
                f"Redis (evicted or deleted); its workers store it back from their signed copy "
                f"within a heartbeat: retry."
            )
        await asyncio.sleep(0.1)  # a worker's heartbeat re-stores it


async def _propose_locked(
    r: Any,
    keys: Keys,
    change: Change,
    sources: dict[str, str] | None,
    owner: str,
    timeout: float,
    wait_swapped: bool,
    key: bytes,
) -> FleetReport:
    t0 = time.perf_counter()
    base = await committed_generation(r, keys, patience=3.0)
    await check_committed(r, keys, base, key)  # never build on what the fleet did not commit
    number = await next_id(r, keys)
    gen = _successor(base, change, sources, number, owner).signed(key, keys.fleet)
    report = FleetReport(gen.number, gen.describe(), parent=base.number)
    quorum = await live_workers(r, keys)
    if not quorum:
        raise FleetError(f"The fleet {keys.fleet!r} has no live worker to reload.")
    await r.hset(keys.generation(gen.number), mapping=gen.to_hash())
    await r.set(keys.proposal, gen.number, px=int((timeout + 60) * 1000))
    cursor = await log(r, keys, {"type": "propose", "gen": gen.number, "parent": base.number})
    t_proposed = time.perf_counter()
    try:
        cursor = await _collect_votes(r, keys, cursor, gen.number, quorum, report, timeout)
    except Exception as exc:
        if isinstance(exc, OSError | ConnectionError | TimeoutError) or (
            exc.__class__.__module__.startswith("redis")
        ):
            report.error = f"Redis failed during the reload ({exc.__class__.__name__}: {exc})"
        else:
            raise
    ok = report.error is None and all(v.get("ok") for v in report.votes.values())
    from ._signing import sign_commit

    signed_commit = sign_commit(key, keys.fleet, gen.number, gen.digest)
    report.outcome = await _decide_retrying(
        r,
        keys,
        gen.number,
        base.number,
        "commit" if ok else "abort",
        signed_commit,
    )
    if report.outcome == "abort" and ok and report.error is None:
        report.error = (
            f"the fleet's committed generation moved away from {base.number} meanwhile "
            f"(another proposer, or a Redis that lost data)"
        )
    if report.outcome == "commit" and (
        not ok or await r.get(keys.commit(gen.number)) != signed_commit
    ):  # "commit" written before ours by someone else: no worker runs it unsigned
        report.outcome = "abort"
        report.error = (
            f"decision:{gen.number} says commit, but not with this proposer's signed "
            f"decision (a write to Redis): workers refuse it"
        )
    t_decided = time.perf_counter()
    if report.outcome == "commit" and wait_swapped:
        with contextlib.suppress(Exception):  # committed already; swaps follow by themselves
            await _collect_swapped(r, keys, cursor, gen.number, quorum, report, timeout)
    t_done = time.perf_counter()
    report.timings.update(
        prepare=t_decided - t_proposed, swap=t_done - t_decided, total=t_done - t0
    )
    if report.outcome != "commit":
        await _expire(r, keys, gen.number)
        message, worker, plugin, phase = _failure_message(report)
        raise FleetError(message, worker=worker, plugin=plugin, phase=phase, report=report)
    await _remember(r, keys, gen.number)
    return report


async def _expire(r: Any, keys: Keys, number: int) -> None:
    """An aborted or superseded proposal's records go after :data:`DECISION_AGE` (by age:
    ids are never reused, so an old record can only ever mean its own proposal)."""
    with contextlib.suppress(Exception):  # Redis gone: the keys stay (bounded by proposals)
        async with r.pipeline(transaction=False) as pipe:
            for k in (keys.generation(number), keys.votes(number), keys.swapped(number),
                      keys.notes(number), keys.decision(number),
                      keys.commit(number)):  # fmt: skip
                pipe.expire(k, DECISION_AGE)
            await pipe.execute()


async def _remember(r: Any, keys: Keys, number: int) -> None:
    """Keep the last KEEP_GENERATIONS committed generations whole; older ones expire."""
    with contextlib.suppress(Exception):  # Redis gone: the next commit trims
        await r.lpush(keys.history, number)
        for old in await r.lrange(keys.history, KEEP_GENERATIONS, -1):
            await r.delete(keys.generation(int(old)))
            await _expire(r, keys, int(old))
        await r.ltrim(keys.history, 0, KEEP_GENERATIONS - 1)


async def _decide_retrying(r, keys, gen, parent, outcome, signature, patience: float = 30.0) -> str:
    """Write the outcome, retrying while Redis is unreachable (a restart), up to ``patience``."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return await decide(r, keys, gen, outcome, parent, signature)
        except Exception as exc:
            if time.monotonic() > deadline or not exc.__class__.__module__.startswith("redis"):
                raise FleetError(
                    f"Generation {gen}'s outcome could not be recorded: Redis is unreachable "
                    f"({exc}). Workers abort it at their deadline."
                ) from exc
            outcome = "abort"  # whatever was collected, a failed Redis aborts the generation
            await asyncio.sleep(delay)  # reconnecting to a restarting server: backoff
            delay = min(delay * 2, 1.0)


async def _wait_log(r: Any, keys: Keys, cursor: str, until: float) -> str:
    """Block until the fleet's stream has an entry past ``cursor`` (or a quarter second
    passed, or ``until``); the new cursor. The entries only wake the reader up."""
    left = until - time.monotonic()
    if left <= 0:
        return cursor
    entries = await r.xread({keys.stream: cursor}, block=int(min(left, 0.25) * 1000) or 1)
    for _, items in entries or ():
        if items:
            cursor = items[-1][0]
    return cursor


async def _collect_votes(r, keys, cursor, gen, quorum, report, timeout) -> str:
    deadline = time.monotonic() + timeout
    last_check = time.monotonic()  # the quorum was alive a moment ago
    while True:
        for worker, raw in (await r.hgetall(keys.votes(gen))).items():
            report.votes[worker] = json.loads(raw)
            if not report.votes[worker].get("ok"):
                return cursor  # one failure is enough: abort now
        if all(w in report.votes for w in quorum):
            return cursor
        if time.monotonic() - last_check > 0.25:
            last_check = time.monotonic()
            for worker in quorum:
                if worker not in report.votes and not await r.exists(keys.worker(worker)):
                    report.votes[worker] = _gone("its heartbeat ended (it died, or was paused)")
                    return cursor
        if time.monotonic() > deadline:
            break
        cursor = await _wait_log(r, keys, cursor, deadline)
    notes = await r.hgetall(keys.notes(gen))
    for worker in quorum:
        if worker not in report.votes:
            why = notes.get(worker) or "no answer"
            report.votes[worker] = {
                "ok": False,
                "plugin": None,
                "phase": "prepare",
                "error": f"{why} within {timeout:g}s",
            }
    return cursor


def _gone(why: str) -> dict[str, Any]:
    return {"ok": False, "plugin": None, "phase": "prepare", "error": f"left the fleet: {why}"}


async def _collect_swapped(r, keys, cursor, gen, quorum, report, timeout) -> None:
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    while True:
        for worker, at in (await r.hgetall(keys.swapped(gen))).items():
            done.add(worker)
            report.swapped_at[worker] = float(at)
        for worker in set(quorum) - done:
            if not await r.exists(keys.worker(worker)):
                done.add(worker)  # a dead worker rejoins on the committed generation
        if set(quorum) <= done or time.monotonic() > deadline:
            break
        cursor = await _wait_log(r, keys, cursor, deadline)
    report.swapped = sorted(done & set(report.swapped_at))
    if len(report.swapped_at) > 1:  # how long two workers served different generations
        report.timings["mixed_window"] = max(report.swapped_at.values()) - min(
            report.swapped_at.values()
        )
