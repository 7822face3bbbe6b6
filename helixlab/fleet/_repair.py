"""No rollback, nothing lost: what a worker does when Redis forgot or went back.

``committed`` and ``decision:*`` are plain Redis writes, and every old generation stays
validly signed, so a worker never goes below its **high-water mark**: the highest
committed generation it, or any worker its supervisor started before it, served (one
file per worker in ``$HELIXLAB_FLEET_HIGH_WATER_DIR``, the supervisor's private run
directory, which outlives worker restarts). A ``committed`` that goes back is refused and
pointed forward again (:data:`REPAIR`); a Redis that lost the fleet's records (no
persistence, FLUSHALL, eviction) learns them back from a worker serving the committed
generation (:data:`REASSERT`). See docs/architecture.md, "Signed decisions, no rollback".
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ..errors import FleetError
from ._coordinator import check_committed
from ._generation import Generation
from ._redis import Keys

__all__ = ["HIGH_WATER_VARIABLE", "high_water", "join_high_water", "raise_high_water"]

HIGH_WATER_VARIABLE = "HELIXLAB_FLEET_HIGH_WATER_DIR"  # the supervisor's high-water marks

# KEYS: committed, gen:{g}, seq, history, commit:{g}; ARGV: g, its signed commit
# decision, and the generation's hash as pairs.
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
# g, the highest generation the fleet committed (signed), if it still holds what was read.
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


def raise_high_water(worker_id: str, number: int) -> None:
    """Record that ``worker_id`` served ``number`` (one file per worker: no two writers)."""
    directory = _high_water_dir()
    if directory is None:
        return
    with contextlib.suppress(OSError):
        tmp = directory / f".{worker_id}.tmp"
        tmp.write_text(str(number))
        tmp.replace(directory / worker_id)


async def _run(script: str, r: Any, keys: Keys, gen: Generation, *argv: str) -> Any:
    """``script`` on the five keys of ``gen``, with ``argv`` then ``gen``'s hash as pairs."""
    pairs = [x for item in gen.to_hash().items() for x in item]
    return await r.eval(
        script,
        5,
        keys.committed,
        keys.generation(gen.number),
        keys.seq,
        keys.history,
        keys.commit(gen.number),
        *argv,
        *pairs,
    )


async def reassert(r: Any, keys: Keys, gen: Generation, commit_sig: str) -> None:
    """Store ``gen`` (the committed generation this worker serves), its signed commit,
    ``committed`` and the counter back wherever Redis lost them."""
    await _run(REASSERT, r, keys, gen, str(gen.number), commit_sig)


async def repair(r: Any, keys: Keys, seen: str, gen: Generation, commit_sig: str) -> bool:
    """Point ``committed`` (if it still reads ``seen``) back at ``gen``, whose signed commit
    is ``commit_sig``; True if it did."""
    return bool(await _run(REPAIR, r, keys, gen, seen, str(gen.number), commit_sig))


async def join_high_water(
    r: Any, keys: Keys, key: bytes, committed: Generation, number: int
) -> tuple[Generation, str]:
    """Redis names ``committed``, below this supervisor's high-water mark ``number``: the
    high-water generation and its signed commit if Redis still holds both (``committed``
    is pointed back at it), else FleetError saying what to do."""
    stored = await r.hgetall(keys.generation(number))
    try:
        if not stored:
            raise FleetError(f"generation {number} is no longer in Redis")
        gen = Generation.from_hash(stored, number)
        commit_sig = await check_committed(r, keys, gen, key)
    except FleetError as exc:
        raise FleetError(
            f"Refusing to join the fleet {keys.fleet!r} on its committed generation "
            f"{committed.number}: it already committed generation {number} ({exc}; Redis "
            f"rolled back, or a write to it). To follow a Redis restored from an older "
            f"snapshot, restart the supervisor."
        ) from None
    await repair(r, keys, str(committed.number), gen, commit_sig)
    return gen, commit_sig
