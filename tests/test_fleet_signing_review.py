# ruff: noqa: F811  (fixtures imported from the suites they extend)
"""Review of issue 21 item 8 (signed generations): what a writer of the fleet's Redis can
make workers run. A generation's signature covers its content and number; the proposer's
signed commit decision covers that the fleet committed it, and each worker's high-water
mark that it is not older than what the fleet served: real worker processes, a real
redis-server."""

from __future__ import annotations

import pytest
from test_fleet_protocol import (  # noqa: F401  (fixtures)
    _propose,
    config,
    flaky_configs,
    fleet,
    fleet_key,
    redis_server,
    run,
    status,
    until,
)

from helixlab.errors import FleetError
from helixlab.fleet import Generation, Keys
from helixlab.fleet._coordinator import committed_generation
from helixlab.fleet._redis import client, redis_binary

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="no redis-server")

def test_an_aborted_signed_proposal_is_not_run_when_redis_names_it_committed(config, redis_server):
    """A proposal the fleet aborted stays in Redis, validly signed. Pointing the committed
    generation at it must not make workers catch up onto it."""
    keys = Keys("helixlab")
    with fleet(config, 2, redis_server.url) as sup:
        base = status(redis_server.url)["generation"]
        action = {"kind": "configure", "plugin": "flaky",
                  "values": {"fail_slot": 1, "mark": "rejected"}}  # fmt: skip
        with pytest.raises(FleetError) as refused:
            run(_propose(redis_server.url, action, timeout=20))
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


def test_rolling_the_committed_pointer_back_does_not_downgrade_the_fleet(config, redis_server):
    """Every old generation stays validly signed: moving the committed pointer back makes
    each worker rejoin, and a rejoining worker loads the old generation (its code and its
    configuration: a plugin version before a fix, a config before custom-auth)."""
    keys = Keys("helixlab")
    with fleet(config, 1, redis_server.url) as sup:
        old = status(redis_server.url)["generation"]
        action = {"kind": "configure", "plugin": "flaky", "values": {"mark": "new"}}
        assert run(_propose(redis_server.url, action)).outcome == "commit"
        assert {c.get("mark") for c in flaky_configs(sup.url, 3).values()} == {"new"}
        r = client(redis_server.url, asyncio=False)
        r.set(keys.committed, old)  # the attacker's one write
        r.close()
        import time

        time.sleep(8)  # heartbeats, the rejoin and the restart
        marks = {c.get("mark") for c in flaky_configs(sup.url, 6).values()}
        assert marks == {"new"}, marks


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
