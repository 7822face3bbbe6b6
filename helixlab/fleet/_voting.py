"""A worker's side of the fleet's log and registers: it hears proposals and decisions,
and writes its votes, its swaps and its interim notes.

It reads the log (a Redis Stream) from the last entry it saw, so a worker that was paused
or reconnecting misses no step; the registers (``decision:{id}``, ``votes:{id}``...) stay
the truth and are read as well, so a log trimmed or lost delays a step, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from ..errors import describe
from ._apply import Vote
from ._coordinator import LOG_LENGTH, decide
from ._generation import Generation
from ._redis import Keys, retrying

__all__ = ["DECISION_PATIENCE", "Voting"]

DECISION_PATIENCE = 45.0  # seconds a prepared worker waits for the outcome, then aborts it


class Voting:
    """Worker ``worker_id``'s reading of the fleet's log and writing of its answers."""

    def __init__(self, r: Any, keys: Keys, worker_id: str):
        self.r, self.keys, self.id = r, keys, worker_id
        self.cursor = "0-0"  # the last log entry read
        self.outcomes: dict[int, str] = {}  # decisions read from the log, by proposal
        self._woken = asyncio.Event()  # a decision was logged

    async def skip_to_end(self) -> None:
        """Read the log from its current end on (a worker joining)."""
        last = await self.r.xrevrange(self.keys.stream, count=1)
        self.cursor = last[0][0] if last else "0-0"

    async def listen(
        self,
        stopping: asyncio.Event,
        proposed: Callable[[int], None],
        failed: Callable[[str], None],
    ) -> None:
        """Read the log until ``stopping``: ``proposed(id)`` for each proposal, decisions
        kept for :meth:`outcome`; ``failed(why)`` on a Redis error, then reconnect."""
        delay = 0.05
        while not stopping.is_set():
            try:
                entries = await self.r.xread({self.keys.stream: self.cursor}, block=1000, count=100)
                delay = 0.05
                for _, items in entries or ():
                    for entry_id, fields in items:
                        self.cursor = entry_id
                        self._read(json.loads(fields["data"]), proposed)
            except Exception as exc:
                if stopping.is_set():
                    return
                failed(f"Redis: {describe(exc)}")
                await asyncio.sleep(delay)  # reconnect backoff
                delay = min(delay * 2, 1.0)

    def _read(self, data: dict[str, Any], proposed: Callable[[int], None]) -> None:
        kind, number = data.get("type"), data.get("gen")
        if kind == "propose" and isinstance(number, int):
            proposed(number)
        elif kind == "decide":
            if isinstance(number, int) and data.get("outcome"):
                # written by the same script as the register: no second read needed
                self.outcomes[number] = data["outcome"]
            self._woken.set()

    def forget_up_to(self, number: int) -> None:
        """Decisions on proposals up to ``number`` (the generation served) matter no more."""
        self.outcomes = {n: o for n, o in self.outcomes.items() if n > number}

    async def vote(self, number: int, vote: Vote) -> None:
        payload = json.dumps({**vote.to_dict(), "gen": number})
        message = {"type": "vote", "gen": number, "worker": self.id}
        await retrying(self._record, self.keys.votes(number), payload, message)

    async def swapped(self, number: int, at: float) -> None:
        message = {"type": "swapped", "gen": number, "worker": self.id}
        await retrying(self._record, self.keys.swapped(number), repr(at), message)

    async def note(self, number: int, text: str) -> None:
        """An interim answer to proposal ``number`` (``busy: draining``), not a vote: the
        proposer's report says it if this worker's vote comes too late."""
        with contextlib.suppress(Exception):
            await self.r.hset(self.keys.notes(number), self.id, text)

    async def _record(self, register: str, value: str, message: dict[str, Any]) -> None:
        """This worker's field of ``register``, then the log entry that wakes readers up
        (one round trip)."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(register, self.id, value)
            pipe.xadd(
                self.keys.stream, {"data": json.dumps(message)}, maxlen=LOG_LENGTH, approximate=True
            )
            await pipe.execute()

    async def outcome(self, gen: Generation) -> str:
        """The fleet's decision on exactly this proposal; past :data:`DECISION_PATIENCE`,
        this worker aborts it (write-once: a commit written first still holds)."""
        deadline = time.monotonic() + DECISION_PATIENCE
        while time.monotonic() < deadline:
            self._woken.clear()
            if gen.number in self.outcomes:
                return self.outcomes[gen.number]
            with contextlib.suppress(Exception):
                outcome = await self.r.get(self.keys.decision(gen.number))
                if outcome:
                    return outcome
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 0.5)
        return await retrying(decide, self.r, self.keys, gen.number, "abort", gen.parent)
