"""Proposing generation g+1 to a fleet and deciding it: commit only when every live worker
is ready, else abort everywhere.

The decision is a write-once register in Redis (``decision:{g}``, ``SET NX`` in one
script that also moves ``committed``): the proposer writes ``commit`` or ``abort``, and a
worker that waited past its deadline writes ``abort``; whichever comes first is the
outcome for everyone. The fleet can therefore never be half on g and half on g+1, even if
the proposer or Redis dies midway (a private Redis keeps its append-only file).
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
from ._generation import KEEP_GENERATIONS, Generation, configured_text
from ._redis import Keys

__all__ = ["FleetReport", "decide", "live_workers", "lock", "propose", "unlock"]

# KEYS: decision, committed; ARGV: outcome, generation. Returns the outcome that holds.
DECIDE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  if ARGV[1] == 'commit' then redis.call('SET', KEYS[2], ARGV[2]) end
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
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

    def __str__(self) -> str:
        lines = [f"generation {self.generation}: {self.action}: {self.outcome}"]
        for worker, vote in sorted(self.votes.items()):
            state = "ready" if vote.get("ok") else f"failed: {vote.get('error')}"
            lines.append(f"  {worker}: {state}")
        if self.timings:
            shown = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.timings.items())
            lines.append(f"  {shown}")
        return "\n".join(lines)


async def decide(r: Any, keys: Keys, gen: int, outcome: str) -> str:
    """Write ``outcome`` for ``gen`` if nobody has; returns the outcome that holds."""
    return await r.eval(DECIDE, 2, keys.decision(gen), keys.committed, outcome, str(gen))


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


async def unlock(r: Any, keys: Keys, owner: str) -> None:
    await r.eval(UNLOCK, 1, keys.lock, owner)


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
    action: dict[str, Any],
    *,
    config: str | None = None,
    source: str | None = None,
    sources: dict[str, str] | None = None,
    timeout: float = 30.0,
    wait_swapped: bool = True,
) -> FleetReport:
    """Propose the next generation (``action``; for ``apply`` its ``config`` text, for
    ``define`` the plugin ``sources``; otherwise both are the committed generation's).

    Returns the report once every worker swapped; raises FleetError naming the worker,
    plugin and phase when the fleet rolled back.
    """
    owner = f"proposer {socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    await lock(r, keys, owner, timeout)
    try:
        return await _propose_locked(
            r, keys, action, config, source, sources, owner, timeout, wait_swapped
        )
    finally:
        with contextlib.suppress(Exception):  # Redis gone: the lock expires by itself
            await unlock(r, keys, owner)


async def _propose_locked(r, keys, action, config, source, sources, owner, timeout, wait_swapped):
    t0 = time.perf_counter()
    committed = await r.get(keys.committed)
    if committed is None:
        raise FleetError(f"No fleet named {keys.fleet!r} runs on this Redis (no generation).")
    base = Generation.from_hash(await r.hgetall(keys.generation(int(committed))))
    if action["kind"] == "configure":
        config = configured_text(base.config, action["plugin"], action["values"])
    gen = Generation(
        number=base.number + 1,
        config=config if config is not None else base.config,
        source=source or base.source,
        action=action,
        proposed_by=owner,
        sources=sources if sources is not None else base.sources,
    )
    report = FleetReport(gen.number, gen.describe())
    quorum = await live_workers(r, keys)
    if not quorum:
        raise FleetError(f"The fleet {keys.fleet!r} has no live worker to reload.")
    pubsub = r.pubsub()
    await pubsub.subscribe(keys.channel)
    try:
        await r.delete(keys.votes(gen.number), keys.swapped(gen.number), keys.decision(gen.number))
        await r.hset(keys.generation(gen.number), mapping=gen.to_hash())
        await r.publish(keys.channel, json.dumps({"type": "propose", "gen": gen.number}))
        t_proposed = time.perf_counter()
        try:
            await _collect_votes(r, keys, pubsub, gen.number, quorum, report, timeout)
        except (OSError, ConnectionError, TimeoutError) as exc:
            report.error = f"Redis failed during the reload ({exc.__class__.__name__}: {exc})"
        except Exception as exc:
            if exc.__class__.__module__.startswith("redis"):
                report.error = f"Redis failed during the reload ({exc.__class__.__name__}: {exc})"
            else:
                raise
        ok = report.error is None and all(v.get("ok") for v in report.votes.values())
        report.outcome = await _decide_retrying(r, keys, gen.number, "commit" if ok else "abort")
        t_decided = time.perf_counter()
        await _publish(r, keys, {"type": "decide", "gen": gen.number, "outcome": report.outcome})
        if report.outcome == "commit" and wait_swapped:
            await _collect_swapped(r, keys, pubsub, gen.number, quorum, report, timeout)
        t_done = time.perf_counter()
        report.timings.update(
            prepare=t_decided - t_proposed, swap=t_done - t_decided, total=t_done - t0
        )
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
    if report.outcome != "commit":
        message, worker, plugin, phase = _failure_message(report)
        raise FleetError(message, worker=worker, plugin=plugin, phase=phase, report=report)
    await _forget(r, keys, gen.number - KEEP_GENERATIONS)
    return report


async def _forget(r: Any, keys: Keys, number: int) -> None:
    """Drop an old generation (its sources, votes, decision): Redis holds a bounded history."""
    if number < 1:
        return
    with contextlib.suppress(Exception):  # Redis gone: the next commit drops the next one
        await r.delete(
            keys.generation(number), keys.votes(number), keys.swapped(number), keys.decision(number)
        )


async def _publish(r, keys, message):
    with contextlib.suppress(Exception):  # workers also read the register when they reconnect
        await r.publish(keys.channel, json.dumps(message))


async def _decide_retrying(r, keys, gen, outcome, patience: float = 30.0) -> str:
    """Write the outcome, retrying while Redis is unreachable (a restart), up to ``patience``."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return await decide(r, keys, gen, outcome)
        except Exception as exc:
            if time.monotonic() > deadline or not exc.__class__.__module__.startswith("redis"):
                raise FleetError(
                    f"Generation {gen}'s outcome could not be recorded: Redis is unreachable "
                    f"({exc}). Workers abort it at their deadline."
                ) from exc
            outcome = "abort"  # whatever was collected, a failed Redis aborts the generation
            await asyncio.sleep(delay)  # reconnecting to a restarting server: backoff
            delay = min(delay * 2, 1.0)


async def _messages(pubsub, gen, until: float):
    """Messages about ``gen`` on the channel, until the monotonic deadline ``until``."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 0.25))
        if message is None:
            yield None  # a quiet quarter second: the caller checks heartbeats
            continue
        data = json.loads(message["data"])
        if data.get("gen") in (gen, None):
            yield data


async def _collect_votes(r, keys, pubsub, gen, quorum, report, timeout) -> None:
    deadline = time.monotonic() + timeout
    for worker, raw in (await r.hgetall(keys.votes(gen))).items():
        report.votes[worker] = json.loads(raw)
    async for data in _messages(pubsub, gen, deadline):
        if data is not None and data.get("type") == "vote":
            report.votes[data["worker"]] = data["vote"]
            if not data["vote"].get("ok"):
                return  # one failure is enough: abort now
        elif (
            data is not None
            and data.get("type") == "gone"
            and data["worker"] in quorum
            and report.votes.get(data["worker"], {"ok": True}).get("ok")
        ):
            report.votes[data["worker"]] = _gone(data.get("why", "the worker died"))
            return
        if all(w in report.votes for w in quorum):
            return
        if data is None:
            for worker in quorum:
                if worker not in report.votes and not await r.exists(keys.worker(worker)):
                    report.votes[worker] = _gone("its heartbeat expired")
                    return
    missing = [w for w in quorum if w not in report.votes]
    for worker in missing:
        report.votes[worker] = {
            "ok": False,
            "plugin": None,
            "phase": "prepare",
            "error": f"no answer within {timeout:g}s",
        }


def _gone(why: str) -> dict[str, Any]:
    return {"ok": False, "plugin": None, "phase": "prepare", "error": f"left the fleet: {why}"}


async def _collect_swapped(r, keys, pubsub, gen, quorum, report, timeout) -> None:
    deadline = time.monotonic() + timeout
    done = set(await r.smembers(keys.swapped(gen)))
    if not set(quorum) <= done:
        async for data in _messages(pubsub, gen, deadline):
            if data is not None and data.get("type") == "swapped":
                done.add(data["worker"])
                report.swapped_at[data["worker"]] = data.get("at", time.time())
            elif data is not None and data.get("type") == "gone":
                done.add(data["worker"])  # a dead worker rejoins on the committed generation
            if set(quorum) <= done:
                break
    report.swapped = sorted(done & set(quorum))
    if len(report.swapped_at) > 1:  # how long two workers served different generations
        report.timings["mixed_window"] = max(report.swapped_at.values()) - min(
            report.swapped_at.values()
        )
