# ruff: noqa: F811  (fixtures imported from the suites they extend)
"""Review of issue 21 item 8 (signed generations): what a writer of the fleet's Redis can
make workers run. A generation's signature covers its content and number; the proposer's
signed commit decision covers that the fleet committed it, and each worker's high-water
mark that it is not older than what the fleet served: real worker processes, a real
redis-server."""

from __future__ import annotations

import pytest
from test_fleet_protocol import (  # noqa: F401  (fixtures)
    config,
    flaky_configs,
    fleet_key,
    status,
)

from helixlab.errors import FleetError
from helixlab.fleet import Generation, Keys
from helixlab.fleet._coordinator import committed_generation
from helixlab.fleet._redis import client, redis_binary
from helixlab.kernel import Change

from _fleet_support import fleet, propose_to, run
from _waiting import wait_until

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="no redis-server")


def test_an_aborted_signed_proposal_is_not_run_when_redis_names_it_committed(config, redis_server):
    """A proposal the fleet aborted stays in Redis, validly signed. Pointing the committed
    generation at it must not make workers catch up onto it."""
    keys = Keys("helixlab")
    with fleet(config, 2, redis_server.url) as sup:
        base = status(redis_server.url)["generation"]
        action = Change.configure("flaky", {"fail_slot": 1, "mark": "rejected"})
        with pytest.raises(FleetError) as refused:
            run(propose_to(redis_server.url, action, timeout=20))
        rejected = refused.value.report.generation
        r = client(redis_server.url, asyncio=False)
        assert r.get(keys.decision(rejected)) == "abort"
        assert int(r.get(keys.committed)) == base
        r.set(keys.committed, rejected)  # the attacker's one write
        r.close()
        import time

        time.sleep(4)  # a few heartbeats: each worker converges on "the committed" one
        marks = {cfg.get("mark") for cfg in flaky_configs(sup.url, 12).values()}
        assert "rejected" not in marks, marks
        # refused, said, and the pointer repaired: the fleet goes on reloading
        r = client(redis_server.url, asyncio=False)
        wait_until(lambda: int(r.get(keys.committed)) == base, 15, "committed repaired")
        r.close()
        errors = [w.get("last_error") or "" for w in sup.status()["workers"]]
        assert any("no signed commit decision" in e for e in errors), errors
        action = Change.configure("flaky", {"mark": "later"})
        assert run(propose_to(redis_server.url, action, timeout=20)).outcome == "commit"
        assert {c.get("mark") for c in flaky_configs(sup.url, 12).values()} == {"later"}


def test_rolling_the_committed_pointer_back_does_not_downgrade_the_fleet(config, redis_server):
    """Every old generation stays validly signed: moving the committed pointer back makes
    each worker rejoin, and a rejoining worker loads the old generation (its code and its
    configuration: a plugin version before a fix, a config before custom-auth)."""
    keys = Keys("helixlab")
    with fleet(config, 1, redis_server.url) as sup:
        old = status(redis_server.url)["generation"]
        action = Change.configure("flaky", {"mark": "new"})
        assert run(propose_to(redis_server.url, action)).outcome == "commit"
        assert {c.get("mark") for c in flaky_configs(sup.url, 3).values()} == {"new"}
        r = client(redis_server.url, asyncio=False)
        r.set(keys.committed, old)  # the attacker's one write
        r.close()
        import time

        time.sleep(8)  # heartbeats, the rejoin and the restart
        marks = {c.get("mark") for c in flaky_configs(sup.url, 6).values()}
        assert marks == {"new"}, marks
        # refused, said, and the pointer moved forward again by the worker that holds the
        # signed commit of the newer generation
        r = client(redis_server.url, asyncio=False)
        wait_until(lambda: int(r.get(keys.committed)) > old, 15, "committed repaired")
        r.close()
        errors = [w.get("last_error") or "" for w in sup.status()["workers"]]
        assert any(f"Refusing the fleet's committed generation {old}" in e for e in errors)


def test_a_worker_restarted_by_its_supervisor_never_joins_below_its_high_water_mark(
    tmp_path, redis_server, fleet_key, monkeypatch
):
    """The supervisor's high-water marks outlive its workers: a worker it starts after
    Redis went back to an older (validly signed and committed) generation refuses to
    join on it, saying what to do, instead of serving the old one."""
    import argparse
    import socket

    from helixlab.fleet._signing import sign_commit
    from helixlab.fleet._worker import HIGH_WATER_VARIABLE, Worker

    keys = Keys("helixlab")
    marks = tmp_path / "high-water"
    marks.mkdir()
    (marks / "an-earlier-worker").write_text("7")
    monkeypatch.setenv(HIGH_WATER_VARIABLE, str(marks))

    async def scenario():
        r = client(redis_server.url)
        try:
            gen = Generation(3, "plugins: {}\n", "plugins.yaml").signed(fleet_key, keys.fleet)
            await r.hset(keys.generation(3), mapping=gen.to_hash())
            await r.set(keys.commit(3), sign_commit(fleet_key, keys.fleet, 3, gen.digest))
            await r.set(keys.committed, 3)
            args = argparse.Namespace(fleet="helixlab", redis=redis_server.url, slot=0)
            worker = Worker(args)
            assert worker.high_water == 7
            with socket.socket() as sock, pytest.raises(FleetError) as refused:
                await worker.join(sock)
            message = str(refused.value)
            assert "committed generation 3" in message and "generation 7" in message
            assert "restart the supervisor" in message
            assert worker.kernel is None  # nothing loaded, nothing served
            await worker.r.aclose()
        finally:
            await r.aclose()

    run(scenario())


def test_a_generation_stored_under_another_number_is_refused(redis_server, fleet_key):
    """The number is signed, the key it is stored under is not: gen:5 holding generation
    1's (validly signed) hash is refused, not read as generation 1 while committed says 5."""
    keys = Keys("helixlab")

    async def scenario():
        r = client(redis_server.url)
        try:
            gen = Generation(1, "plugins: {}\n", "plugins.yaml").signed(fleet_key, keys.fleet)
            await r.hset(keys.generation(1), mapping=gen.to_hash())
            await r.set(keys.committed, 1)
            assert (await committed_generation(r, keys)).number == 1
            await r.hset(keys.generation(5), mapping=gen.to_hash())
            await r.set(keys.committed, 5)
            with pytest.raises(FleetError, match="Redis holds generation '1' under its key"):
                await committed_generation(r, keys)
        finally:
            await r.aclose()

    run(scenario())


def test_a_restarted_worker_joins_on_its_high_water_generation_not_the_rolled_back_one(
    config, redis_server
):
    """The worker serving the newest generation is stopped before it can repair the
    pointer, and killed: the supervisor's next worker finds ``committed`` rolled back,
    and joins on the high-water generation (still in Redis, its commit signed), pointing
    ``committed`` back at it."""
    import os
    import signal

    keys = Keys("helixlab")
    with fleet(config, 1, redis_server.url) as sup:
        old = status(redis_server.url)["generation"]
        action = Change.configure("flaky", {"mark": "new"})
        new = run(propose_to(redis_server.url, action)).generation
        pid = sup.slots[0].process.pid
        os.kill(pid, signal.SIGSTOP)  # no heartbeat repairs the pointer meanwhile
        r = client(redis_server.url, asyncio=False)
        r.set(keys.committed, old)  # the attacker's one write
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: [w["generation"] for w in sup.status()["workers"] if w["pid"] != pid] == [new],
            60,
            "a new worker serving the high-water generation",
        )
        assert int(r.get(keys.committed)) == new
        r.close()
        assert {c.get("mark") for c in flaky_configs(sup.url, 6).values()} == {"new"}


def test_a_commit_decision_written_ahead_by_someone_else_is_not_reported_committed(
    redis_server, fleet_key
):
    """``decision:{P}`` is write-once: a Redis writer who writes ``commit`` for the next id
    first wins the register, but not the signature. The proposer says so (it does not
    report a commit no worker runs), and ``committed`` stays where it was."""
    import asyncio
    import json

    from helixlab.fleet import propose
    from helixlab.fleet._coordinator import log
    from helixlab.fleet._signing import sign_commit

    keys = Keys("helixlab")

    async def scenario():
        r = client(redis_server.url)
        try:
            base = Generation(1, "plugins: {}\n", "plugins.yaml").signed(fleet_key, keys.fleet)
            await r.hset(keys.generation(1), mapping=base.to_hash())
            await r.set(keys.commit(1), sign_commit(fleet_key, keys.fleet, 1, base.digest))
            await r.set(keys.committed, 1)
            await r.set(keys.seq, 1)
            await r.set(keys.decision(2), "commit")  # the attacker's write, ahead
            await r.set(keys.worker("w1"), json.dumps({"id": "w1"}), px=60_000)

            async def vote_ready():
                while not (proposal := await r.get(keys.proposal)):
                    await asyncio.sleep(0.01)
                await r.hset(keys.votes(int(proposal)), "w1", json.dumps({"ok": True}))
                await log(r, keys, {"type": "vote", "gen": int(proposal), "worker": "w1"})

            voter = asyncio.ensure_future(vote_ready())
            with pytest.raises(FleetError, match="not with this proposer's signed decision"):
                await propose(r, keys, Change.reload("flaky"), timeout=5)
            await voter
            assert await r.get(keys.committed) == "1"
            assert await r.get(keys.commit(2)) is None
        finally:
            await r.aclose()

    run(scenario())
