"""The fleet's protocol under the faults issue 21 found: a worker paused inside prepare,
stale votes, ``${`` in configured values, eviction, forged generations, lock identity,
and a proposal made while the previous commit drains. Real worker processes, a real
redis-server, real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helixlab.errors import FleetError
from helixlab.fleet import Generation, Keys, propose
from helixlab.fleet import _redis as fleet_redis
from helixlab.fleet._cli import fleet_status
from helixlab.fleet._coordinator import decide, log, unlock
from helixlab.fleet._generation import configured_text
from helixlab.fleet._redis import client
from helixlab.fleet._signing import sign_commit
from helixlab.fleet._worker import worker_id
from helixlab.kernel import Change

from _fleet_support import fleet, plugins_config, propose_to, run
from _waiting import wait_until

pytestmark = pytest.mark.skipif(fleet_redis.redis_binary() is None, reason="no redis-server")

KEY = "protocol-test-key-0123456789abcdef"

CONFIG = """\
plugins:
  custom-provider:
    config: {}
  flaky:
    config: {}
"""


@pytest.fixture(autouse=True)
def fleet_key(monkeypatch):
    monkeypatch.setenv("HELIXLAB_FLEET_KEY", KEY)
    return KEY.encode()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return plugins_config(tmp_path, CONFIG)


def status(url: str) -> dict:
    async def read():
        r = client(url)
        try:
            return await fleet_status(r, Keys("helixlab"))
        finally:
            await r.aclose()

    return run(read())


def flaky_configs(url: str, n: int = 30) -> dict[str, dict]:
    """flaky's config as each worker answering fresh connections serves it."""
    seen: dict[str, dict] = {}
    for _ in range(n):
        with httpx.Client(timeout=30) as c:
            answer = c.get(url + "/v1/plugins")
        rows = {row["name"]: row for row in answer.json()["data"]}
        seen[answer.headers["x-helixlab-worker"]] = rows["flaky"]["config"]
    return seen


def converged(url: str, workers: int) -> bool:
    s = status(url)
    return (
        len(s["workers"]) == workers
        and all(w["state"] == "serving" for w in s["workers"])
        and {(w["generation"], w["digest"]) for w in s["workers"]}
        == {(s["generation"], s["digest"])}
    )


def test_a_worker_paused_in_prepare_never_commits_its_stale_proposal(config, redis_server):
    """Item 1: SIGSTOP inside prepare of P1, P1 aborts, P2 commits at once; the resumed
    worker aborts P1 and converges on P2's content (not P1's under P2's number)."""
    with fleet(config, 3, redis_server.url) as sup:
        victim = sup.pids()[0]
        result: dict = {}

        def slow():
            try:
                run(propose_to(redis_server.url, Change.configure("flaky",
                                                {"delay": 2, "mark": "p1"})))  # fmt: skip
            except FleetError as exc:
                result["p1"] = exc

        thread = threading.Thread(target=slow)
        thread.start()
        wait_until(
            lambda: [w["state"] for w in status(redis_server.url)["workers"]],
            10,
            "a worker preparing",
            holds=lambda states: any(s.startswith("preparing") for s in states),
        )
        os.kill(victim, signal.SIGSTOP)
        try:
            thread.join(30)
            p1 = result["p1"].report
            assert p1.outcome == "abort"
            action = Change.configure("flaky", {"delay": 0, "mark": "p2"})
            p2 = run(propose_to(redis_server.url, action))
            assert p2.outcome == "commit" and p2.generation > p1.generation  # never reused
        finally:
            os.kill(victim, signal.SIGCONT)
        wait_until(lambda: converged(redis_server.url, 3), 40, "convergence")
        marks = {cfg.get("mark") for cfg in flaky_configs(sup.url).values()}
        assert marks == {"p2"}
        r = client(redis_server.url, asyncio=False)
        keys = Keys("helixlab")
        assert r.get(keys.decision(p1.generation)) == "abort"  # written once, still there
        assert r.get(keys.decision(p2.generation)) == "commit"
        assert int(r.get(keys.committed)) == p2.generation
        r.close()


def test_a_late_vote_for_an_aborted_proposal_never_counts_for_the_next(redis_server):
    """Item 2, at the protocol level: a 'worker' (a heartbeat key) answers P1 too late
    and refuses P2; P2 must abort although a ready vote for P1 sits in Redis."""
    keys = Keys("helixlab")
    key = KEY.encode()

    async def scenario():
        r = client(redis_server.url)
        try:
            base = Generation(1, CONFIG, "plugins.yaml").signed(key, keys.fleet)
            await r.hset(keys.generation(1), mapping=base.to_hash())
            await r.set(keys.commit(1), sign_commit(key, keys.fleet, 1, base.digest))
            await r.set(keys.committed, 1)
            await r.set(keys.worker("w1"), json.dumps({"id": "w1"}), px=60_000)
            with pytest.raises(FleetError, match=r"no answer within 0\.5s") as first:
                await propose(r, keys, Change.reload("flaky"), timeout=0.5)
            p1 = first.value.report.generation
            await r.hset(keys.votes(p1), "w1", json.dumps({"ok": True, "gen": p1}))  # late

            async def refuse_next():
                while not (proposal := await r.get(keys.proposal)):
                    await asyncio.sleep(0.01)
                vote = {"ok": False, "plugin": "flaky", "phase": "start", "error": "no"}
                await r.hset(keys.votes(int(proposal)), "w1", json.dumps(vote))
                await log(r, keys, {"type": "vote", "gen": int(proposal), "worker": "w1"})

            refuser = asyncio.ensure_future(refuse_next())
            with pytest.raises(FleetError) as second:
                await propose(r, keys, Change.reload("flaky"), timeout=5)
            await refuser
            p2 = second.value.report
            assert p2.generation != p1 and p2.outcome == "abort"
            assert p2.votes["w1"]["ok"] is False
            assert await r.get(keys.committed) == "1"
            # the decision is write-once: a later commit attempt for P1 changes nothing
            assert await decide(r, keys, p1, "commit", 1) == "abort"
        finally:
            await r.aclose()

    run(scenario())


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="${}:-abcAB_ ", max_size=20))
def test_configured_values_are_stored_as_applied(value):
    """Item 3: whatever a configured string holds, the stored text reads back as it."""
    from helixlab.kernel._config import parse_config

    text = configured_text(CONFIG, "flaky", {"prompt": value, "nested": {"list": [value]}})
    doc = parse_config(text, env={})
    assert doc.plugins["flaky"].config["prompt"] == value
    assert doc.plugins["flaky"].config["nested"] == {"list": [value]}


def test_a_template_value_does_not_poison_a_joining_worker(config, redis_server):
    """Item 3, end to end: configure '${name}', kill -9 a worker: it rejoins and serves."""
    with fleet(config, 2, redis_server.url) as sup:
        report = run(propose_to(redis_server.url, Change.configure("flaky",
                                                 {"prompt": "Hi ${name}!"})))  # fmt: skip
        assert report.outcome == "commit"
        victim = sup.pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: victim not in sup.pids() and converged(redis_server.url, 2),
            40,
            "the killed worker replaced, all converged",
        )
        prompts = {cfg.get("prompt") for cfg in flaky_configs(sup.url).values()}
        assert prompts == {"Hi ${name}!"}


def test_an_evicting_redis_is_refused_at_start(config, redis_server):
    """Item 4: maxmemory-policy allkeys-* is refused with the fix in the message."""
    r = client(redis_server.url, asyncio=False)
    r.config_set("maxmemory-policy", "allkeys-lru")
    r.close()
    with pytest.raises(FleetError, match=r"maxmemory-policy allkeys-lru.*noeviction"):
        fleet(config, 1, redis_server.url).start()


def test_an_evicted_committed_generation_is_stored_back_by_the_workers(config, redis_server):
    """Item 4, when eviction happens anyway: reloads and joiners still work."""
    with fleet(config, 2, redis_server.url) as sup:
        r, keys = client(redis_server.url, asyncio=False), Keys("helixlab")
        committed = int(r.get(keys.committed))
        r.delete(keys.generation(committed))  # as an eviction would
        wait_until(lambda: r.exists(keys.generation(committed)), 10, "re-stored")
        assert run(propose_to(redis_server.url, Change.reload("flaky"))).outcome == "commit"
        r.close()
        assert converged(redis_server.url, 2) or wait_until(
            lambda: converged(sup.redis_url, 2), 30, "convergence"
        )


def test_workers_refuse_a_generation_not_signed_with_the_fleet_key(config, redis_server):
    """Signed generations: a proposal written straight into Redis (no key, or another key,
    or a change that is not the kernel's wire form) is refused by every worker, which says
    why; the fleet keeps serving."""
    keys = Keys("helixlab")
    with fleet(config, 2, redis_server.url) as sup:
        base_number = status(redis_server.url)["generation"]

        async def forge(key: bytes | None, wire: str = "") -> dict:
            r = client(redis_server.url)
            try:
                base = Generation.from_hash(await r.hgetall(keys.generation(base_number)))
                number = int(await r.incr(keys.seq))
                evil = Generation(number, base.config, base.source,
                                  change=Change.reload("flaky"),
                                  sources={**base.sources, "evil.py": "import os\n"},
                                  parent=base_number)  # fmt: skip
                if key is not None:
                    evil = evil.signed(key, keys.fleet)
                stored = {**evil.to_hash(), **({"change": wire} if wire else {})}
                await r.hset(keys.generation(number), mapping=stored)
                await r.set(keys.proposal, number, px=60_000)
                await log(r, keys, {"type": "propose", "gen": number, "parent": base_number})
                for _ in range(300):
                    votes = await r.hgetall(keys.votes(number))
                    if len(votes) == 2:
                        return {w: json.loads(v) for w, v in votes.items()}
                    await asyncio.sleep(0.05)
                raise AssertionError("no votes")
            finally:
                await r.aclose()

        malformed = '{"kind": "define_file", "path": "../../etc/x.py"}'
        for key, why, wire in (
            (None, "it is not signed", ""),
            (b"another-key-0123456789", "signature", ""),
            (None, "its change is malformed", malformed),
        ):
            votes = run(forge(key, wire))
            for vote in votes.values():
                assert vote["ok"] is False and vote["phase"] == "verify"
                assert "Refusing fleet generation" in vote["error"] and why in vote["error"]
        assert status(redis_server.url)["generation"] == base_number
        assert run(propose_to(redis_server.url, Change.reload("flaky"))).outcome == "commit"
        assert len(flaky_configs(sup.url, 6)) >= 1


def test_the_join_lock_is_released_by_its_exact_owner_only(redis_server):
    """Item 7: 'host-12' dying never frees 'host-123''s lock; ids never collide."""
    keys = Keys("helixlab")

    async def scenario():
        r = client(redis_server.url)
        try:
            await r.set(keys.lock, "worker host-123 joining")
            await unlock(r, keys, "worker host-12 joining")
            assert await r.get(keys.lock) == "worker host-123 joining"
            await unlock(r, keys, "worker host-123 joining")
            assert await r.get(keys.lock) is None
        finally:
            await r.aclose()

    run(scenario())
    os.environ.pop("HELIXLAB_WORKER_ID", None)
    ids = {worker_id() for _ in range(50)}  # same host, same pid: still 50 ids
    assert len(ids) == 50


def test_a_proposal_made_while_the_last_commit_drains_gets_its_votes(config, redis_server):
    """Item 6: the old generation takes 3 s to stop; the next proposal still commits
    (its votes come once the drain ends), or, past its timeout, says 'busy: draining'."""
    with fleet(config, 2, redis_server.url):
        run(propose_to(redis_server.url, Change.configure("flaky", {"stop_delay": 3})))
        first = run(propose_to(redis_server.url, Change.reload("flaky")))
        assert first.outcome == "commit"  # swapped at once; the old instance stops slowly
        second = run(propose_to(redis_server.url, Change.reload("flaky"), timeout=20))
        assert second.outcome == "commit" and len(second.swapped) == 2
        with pytest.raises(FleetError, match="busy: draining"):
            run(propose_to(redis_server.url, Change.reload("flaky"), timeout=0.5))


def test_fleet_status_shows_each_workers_digest(config, redis_server):
    """Convergence: `helixlab fleet status` shows the digest each worker serves."""
    from helixlab.fleet._cli import format_status

    with fleet(config, 2, redis_server.url):
        s = status(redis_server.url)
        assert {w["digest"] for w in s["workers"]} == {s["digest"]}
        table = format_status(s)
        assert "DIGEST" in table.splitlines()[1]
        assert table.count(s["digest"]) == 3  # the head line and each worker
