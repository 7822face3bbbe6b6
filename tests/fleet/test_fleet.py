"""A fleet as its user runs it: real worker processes on one port, a real redis-server,
real HTTP, kill -9, and a Redis stopped mid-reload."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from helixlab.errors import FleetError
from helixlab.fleet import Keys, PrivateRedis, Supervisor
from helixlab.fleet import _redis as fleet_redis
from helixlab.fleet._cli import fleet_status, format_status
from helixlab.fleet._ratestore import RedisBucketStore
from helixlab.fleet._redis import client
from helixlab.kernel import Change
from helixlab.plugins._ratelimit import RateLimiterConfig

from _fleet_support import CHAT, FLAKY, fleet, plugins_config, propose_to, run
from _ipython import ip_fixture  # noqa: F401  (the `ip` fixture)
from _ipython import run as run_cell
from _waiting import wait_until

pytestmark = pytest.mark.skipif(fleet_redis.redis_binary() is None, reason="no redis-server")

CONFIG = """\
plugins:
  custom-provider:
    config: {}
  flaky:
    config: {}
  rate-limiter:
    config:
      requests_per_minute: 6000
      burst_size: 1000
"""


@pytest.fixture(autouse=True)
def fleet_key(monkeypatch):
    """Every fleet here signs its generations with this key (workers inherit it)."""
    key = "test-fleet-key-0123456789abcdef"
    monkeypatch.setenv("HELIXLAB_FLEET_KEY", key)
    return key.encode()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return plugins_config(tmp_path, CONFIG)


async def _status(url: str) -> dict:
    r = client(url)
    try:
        return await fleet_status(r, Keys("helixlab"))
    finally:
        await r.aclose()


def served_by(url: str, n: int = 40) -> Counter:
    """Which workers answer fresh connections to the one port."""
    seen: Counter = Counter()
    for _ in range(n):
        with httpx.Client(timeout=10) as c:
            seen[c.get(url + "/v1/models").headers["x-helixlab-worker"]] += 1
    return seen


class Load:
    """Requests (JSON and streams) from two threads until stopped; every failure kept."""

    def __init__(self, url: str):
        self.url, self.ok, self.failures = url, 0, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def _run(self, i: int) -> None:
        with httpx.Client(timeout=20) as c:
            while not self._stop.is_set():
                try:
                    if i:
                        with c.stream("POST", self.url + "/v1/chat/completions",
                                      json={**CHAT, "stream": True}) as r:  # fmt: skip
                            body = "".join(r.iter_text())
                            assert r.status_code == 200 and "[DONE]" in body, body
                    else:
                        r = c.post(self.url + "/v1/chat/completions", json=CHAT)
                        assert r.status_code == 200, r.text
                    self.ok += 1
                except Exception as exc:
                    self.failures.append(repr(exc))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(30)


def test_without_redis_server_a_clear_message(monkeypatch):
    monkeypatch.setattr(fleet_redis, "redis_binary", lambda: None)
    with pytest.raises(FleetError) as caught:
        PrivateRedis()
    assert "apt-get install redis-server" in str(caught.value)
    assert "--redis" in str(caught.value)


def test_private_redis_keeps_decisions_across_a_restart(redis_server):
    r = client(redis_server.url, asyncio=False)
    r.set("helixlab:fleet:x:committed", 7)
    redis_server.stop()
    redis_server.start()
    assert r.get("helixlab:fleet:x:committed") == "7"
    r.close()


def test_two_workers_one_port_reload_and_configure_under_load(config, redis_server):
    with fleet(config, 2, redis_server.url) as sup:
        assert len(served_by(sup.url)) == 2  # both workers answer on the one port
        with Load(sup.url) as load:
            for _ in range(3):
                report = run(propose_to(redis_server.url, Change.reload("custom-provider")))
                assert report.outcome == "commit" and len(report.swapped) == 2
            action = Change.configure("rate-limiter", {"burst_size": 999})
            report = run(propose_to(redis_server.url, action))
            assert report.outcome == "commit"
            time.sleep(0.3)  # let the load run on the new generation too
        assert load.failures == [] and load.ok > 10
        status = run(_status(redis_server.url))
        assert status["generation"] == 5
        assert [w["generation"] for w in status["workers"]] == [5, 5]
        limits = {
            httpx.post(sup.url + "/v1/chat/completions", json=CHAT).headers[
                "x-ratelimit-remaining-requests"
            ]
            for _ in range(4)
        }
        assert all(int(v) < 999 for v in limits)


def test_a_failure_on_one_worker_rolls_back_every_worker(config, redis_server):
    with fleet(config, 3, redis_server.url) as sup:
        with pytest.raises(FleetError) as caught:
            run(propose_to(redis_server.url, Change.configure("flaky", {"fail_slot": 1})))
        error = caught.value
        assert error.plugin == "flaky" and error.phase == "start"
        message = str(error)
        assert "rolled back on every worker" in message and error.worker in message
        assert "flaky refuses to start" in message
        status = run(_status(redis_server.url))
        assert status["generation"] == 1
        assert {w["generation"] for w in status["workers"]} == {1}
        assert httpx.post(sup.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_kill_9_during_prepare_aborts_and_the_worker_rejoins(config, redis_server):
    with fleet(config, 2, redis_server.url) as sup:
        victim = sup.pids()[0]
        result: dict = {}

        def slow_reload():
            try:
                run(propose_to(redis_server.url, Change.configure("flaky", {"delay": 3})))
            except FleetError as exc:
                result["error"] = exc

        thread = threading.Thread(target=slow_reload)
        thread.start()
        wait_until(
            lambda: [w["state"] for w in run(_status(redis_server.url))["workers"]],
            10,
            "a worker preparing",
            holds=lambda states: any(s.startswith("preparing") for s in states),
        )
        os.kill(victim, signal.SIGKILL)
        thread.join(30)
        assert "left the fleet" in str(result["error"])
        # the supervisor restarts it; it rejoins on the committed generation
        status = wait_until(
            lambda: run(_status(redis_server.url)),
            20,
            "the killed worker replaced, both serving",
            holds=lambda status: (
                len(pids := {w["pid"] for w in status["workers"]}) == 2
                and victim not in pids
                and all(w["state"] == "serving" for w in status["workers"])
            ),
        )
        assert status["generation"] == 1
        assert {w["generation"] for w in status["workers"]} == {1}


def test_kill_9_during_serve_restarts_the_worker(config, redis_server):
    with fleet(config, 2, redis_server.url) as sup:
        victim = sup.pids()[1]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (sup.pids(), len(run(_status(redis_server.url))["workers"])),
            20,
            "the killed worker replaced (pids, workers in the status)",
            holds=lambda seen: victim not in seen[0] and seen[1] >= 2,
        )
        assert len(served_by(sup.url)) == 2
        assert run(propose_to(redis_server.url, Change.reload("flaky"))).outcome == "commit"


def test_a_second_group_joins_on_the_committed_generation(config, redis_server, tmp_path):
    """Two `helixlab serve` on one Redis (two hosts, as Redis sees it); the late one joins
    after three generations and serves the third's configuration, not its own file."""
    with fleet(config, 1, redis_server.url) as first:
        for burst in (11, 12, 13):
            run(propose_to(redis_server.url, Change.configure("rate-limiter",
                                            {"burst_size": burst})))  # fmt: skip
        other = tmp_path / "other.yaml"
        other.write_text(CONFIG)  # its own file still says 1000
        with fleet(other, 1, redis_server.url) as second:
            assert second.url != first.url
            r = httpx.post(second.url + "/v1/chat/completions", json=CHAT)
            assert int(r.headers["x-ratelimit-remaining-requests"]) <= 13
            status = run(_status(redis_server.url))
            assert [w["generation"] for w in status["workers"]] == [4, 4]
            report = run(propose_to(redis_server.url, Change.reload("flaky")))
            assert len(report.swapped) == 2


def test_redis_restarted_during_a_reload_leaves_one_generation(config, redis_server):
    with fleet(config, 2, redis_server.url):
        result: dict = {}

        def slow_reload():
            try:
                result["report"] = run(
                    propose_to(
                        redis_server.url,
                        Change.configure("flaky", {"delay": 1.5}),
                    )
                )
            except FleetError as exc:
                result["error"] = exc

        thread = threading.Thread(target=slow_reload)
        thread.start()
        wait_until(  # the workers are inside their 1.5 s start
            lambda: [w["state"] for w in run(_status(redis_server.url))["workers"]],
            15,
            "a worker preparing",
            holds=lambda states: any(s.startswith("preparing") for s in states),
        )
        redis_server.stop()
        time.sleep(1.5)
        redis_server.start()
        thread.join(60)
        assert ("report" in result) != ("error" in result)  # done or failed, never neither
        status = wait_until(
            lambda: run(_status(redis_server.url)),
            30,
            "both workers serving",
            holds=lambda status: (
                len(status["workers"]) == 2
                and all(w["state"] == "serving" for w in status["workers"])
            ),
        )
        gens = {w["generation"] for w in status["workers"]}
        assert gens == {status["generation"]}  # all on g or all on g+1
        assert status["generation"] == (2 if "report" in result else 1)


def test_a_shared_rate_limit_is_exact_across_workers(config, redis_server, tmp_path):
    import openai

    path = tmp_path / "limited.yaml"
    path.write_text(
        CONFIG.replace("requests_per_minute: 6000", "requests_per_minute: 1").replace(
            "burst_size: 1000", "burst_size: 5"
        )
    )
    with fleet(path, 2, redis_server.url) as sup:
        admitted, refused, workers = 0, 0, set()
        for _ in range(16):
            c = openai.OpenAI(base_url=sup.url + "/v1", api_key="sk-test", max_retries=0)
            try:
                raw = c.chat.completions.with_raw_response.create(**CHAT)
                workers.add(raw.headers["x-helixlab-worker"])
                admitted += 1
            except openai.RateLimitError as exc:
                workers.add(exc.response.headers["x-helixlab-worker"])
                refused += 1
            finally:
                c.close()
        assert len(workers) == 2
        assert (admitted, refused) == (5, 11)


def test_the_rate_limit_policy_when_redis_is_unreachable(tmp_path):
    url = f"unix://{tmp_path}/nothing.sock"
    config = RateLimiterConfig(requests_per_minute=60, burst_size=3)
    store = RedisBucketStore(url, Keys("x"), config)  # the default: open
    assert run(store.acquire("client")).allowed
    assert "policy 'open': requests are admitted" in store.health()  # Degraded, not down
    closed = RedisBucketStore(url, Keys("x"), config, policy="closed")
    assert not run(closed.acquire("client")).allowed
    with pytest.raises(ConnectionError, match="refused with 429"):
        closed.health()


def test_metrics_parse_with_prometheus_client(config, redis_server):
    from prometheus_client.parser import text_string_to_metric_families

    with fleet(config, 2, redis_server.url, admin_key="metrics-key-0123456789") as sup:
        for _ in range(6):
            with httpx.Client() as c:
                assert c.post(sup.url + "/v1/chat/completions", json=CHAT).status_code == 200
        run(propose_to(redis_server.url, Change.reload("flaky")))
        key = {"Authorization": "Bearer metrics-key-0123456789"}  # not public (issue 20)
        text = httpx.get(sup.url + "/metrics", headers=key).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = [
        s for s in families["helixlab_requests"].samples if s.name == "helixlab_requests_total"
    ]
    chat = [s for s in requests if s.labels["route"] == "/v1/chat/completions"]
    assert sum(s.value for s in chat) == 6
    assert chat[0].labels["model"] == "mock-small" and chat[0].labels["status"] == "200"
    assert chat[0].labels["provider"] == "custom-provider"
    generations = families["helixlab_fleet_generation"].samples
    assert sorted(s.value for s in generations) == [2, 2]
    reloads = families["helixlab_reloads"].samples
    assert any(s.labels == {"plugin": "flaky", "outcome": "ok"} and s.value == 2 for s in reloads)
    assert "helixlab_request_duration_seconds" in families
    assert "helixlab_leases_in_flight" in families


def test_fleet_status_and_reload_from_the_command_line(config, redis_server):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "helixlab", "fleet", "--redis", redis_server.url, *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    with fleet(config, 2, redis_server.url) as sup:
        done = cli("configure", "rate-limiter", "burst_size=50")
        assert done.returncode == 0, done.stderr
        assert "generation 2: configure rate-limiter burst_size=50: commit" in done.stdout
        status = cli("status")
        assert status.returncode == 0
        lines = status.stdout.splitlines()
        assert lines[0].startswith("fleet 'helixlab': generation 2 (")
        assert lines[0].endswith("2 worker(s)")
        assert lines[1].split() == [
            "WORKER", "HOST", "PID", "GEN", "STATE", "DIGEST", "UP", "LAST", "ERROR",
        ]  # fmt: skip
        for pid, line in zip(sorted(sup.pids()), sorted(lines[2:]), strict=True):
            assert line.split()[2:5] == [str(pid), "2", "serving"]
        failed = cli("reload", "no-such-plugin")
        assert failed.returncode == 1
        assert "No plugin named 'no-such-plugin'" in failed.stderr
        assert "rolled back on every worker" in failed.stderr
    assert format_status({"fleet": "f", "generation": None, "digest": None, "workers": []})


def test_a_saved_config_file_reloads_the_whole_fleet(config, redis_server):
    with fleet(config, 2, redis_server.url, watch=True) as sup:
        assert sup.watching.wait(10)
        config.write_text(CONFIG.replace("burst_size: 1000", "burst_size: 77"))
        wait_until(
            lambda: run(_status(redis_server.url)),
            30,
            "both workers on generation 2",
            holds=lambda status: [w["generation"] for w in status["workers"]] == [2, 2],
        )
        for _ in range(4):
            r = httpx.post(sup.url + "/v1/chat/completions", json=CHAT)
            assert int(r.headers["x-ratelimit-remaining-requests"]) < 77


def test_helix_fleet_shows_the_table_and_a_live_chart_across_a_reload(config, redis_server, ip):
    from helixlab.fleet._widget import FleetView

    with fleet(config, 2, redis_server.url) as sup:
        ran = run_cell(ip, f"view = %helix fleet --redis {redis_server.url}\nview")
        assert ran.error is None, ran.stdout + ran.stderr
        view = ip.user_ns["view"]
        assert isinstance(view, FleetView) and repr(view) == "FleetView(fleet 'helixlab')"
        try:
            with Load(sup.url) as load:
                # the view polls by itself: wait for a rate per worker, then for the mark
                wait_until(lambda: len(view.series) == 2, 15, "a rate per worker")
                sup.reload("custom-provider")
                wait_until(
                    lambda: view.marks and all(len(p) > 2 for p in view.series.values()),
                    15,
                    "the reload's mark, and rates after it",
                )
                view.refresh()
            assert load.failures == []
            table = view.table.value
            assert "generation 2" in table and table.count("<tr>") == 3  # header + 2 workers
            for pid in sup.pids():
                assert f"<td>{pid}</td>" in table
            chart = view.chart.value
            assert chart.startswith("<svg") and ">g2</text>" in chart  # the reload, marked
            assert chart.count("<polyline") == 4  # requests and errors, per worker
        finally:
            view.close()
        assert sup.status()["generation"] == 2


def plugin_versions(url: str) -> set[str]:
    """flaky's version as each worker answering ``url`` reports it."""
    found = set()
    for _ in range(12):
        with httpx.Client(timeout=10) as c:
            rows = c.get(url + "/v1/plugins").json()["data"]
        found |= {row["version"] for row in rows if row["name"] == "flaky"}
    return found


def test_a_saved_plugin_file_reloads_the_fleet_from_the_generations_sources(
    config, redis_server, tmp_path
):
    source = config.parent / "plugins" / "flaky.py"
    with fleet(config, 2, redis_server.url, watch=True) as sup:
        assert sup.watching.wait(10)
        source.write_text(FLAKY.replace('version = "1.0.0"', 'version = "2.0.0"'))
        wait_until(
            lambda: [w["generation"] for w in sup.status()["workers"]],
            15,
            "both workers on generation 2",
            holds=lambda generations: generations == [2, 2],
        )
        assert plugin_versions(sup.url) == {"2.0.0"}
        source.write_text(FLAKY.replace("class Flaky", "class Flaky(:"))  # a syntax error
        wait_until(
            lambda: [w["last_error"] or "" for w in sup.status()["workers"]],
            15,
            "the syntax error refused",
            holds=lambda errors: any("flaky" in e for e in errors),
        )
        assert sup.status()["generation"] == 2  # refused everywhere, still 2.0.0
        assert plugin_versions(sup.url) == {"2.0.0"}
        # another host whose plugins directory still holds 1.0.0 joins on the fleet's code
        other = tmp_path / "other"
        (other / "plugins").mkdir(parents=True)
        (other / "plugins" / "flaky.py").write_text(FLAKY)
        (other / "plugins.yaml").write_text(CONFIG)
        with fleet(other / "plugins.yaml", 1, redis_server.url) as second:
            assert plugin_versions(second.url) == {"2.0.0"}


def test_with_redis_down_the_limiter_admits_and_health_says_so(config, redis_server):
    config.write_text(CONFIG + "gateway:\n  health_detail: public\n")  # detail without auth
    with fleet(config, 1, redis_server.url) as sup:
        assert httpx.get(sup.url + "/health").status_code == 200
        redis_server.stop()
        try:
            assert httpx.post(sup.url + "/v1/chat/completions", json=CHAT).status_code == 200
            health = httpx.get(sup.url + "/health")  # policy open: degraded, still in rotation
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            detail = health.json()["plugins"]["rate-limiter"]["detail"]
            assert "limits not enforced" in detail and "policy 'open'" in detail
        finally:
            redis_server.start()
        wait_until(
            lambda: httpx.get(sup.url + "/health").json()["status"],
            15,
            "health ok again",
            holds=lambda status: status == "ok",
        )


@pytest.mark.parametrize(
    ("flags", "runs"),
    [((), "uvloop + httptools"), (("--loop", "asyncio", "--http", "h11"), "asyncio + h11")],
)
def test_serve_with_a_fleet_section_runs_its_workers_on_a_private_redis(tmp_path, flags, runs):
    name = f"t{os.getpid()}"
    path = tmp_path / "plugins.yaml"
    path.write_text(
        CONFIG.replace("  flaky:\n    config: {}\n", "") + f"fleet:\n  workers: 2\n  name: {name}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "helixlab", "serve", str(path), "--port", "0", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = process.stdout.readline().strip()  # printed once every worker serves
        assert len(served_by(url)) == 2
        status = subprocess.run(
            [sys.executable, "-m", "helixlab", "fleet", "--fleet", name, "status"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"fleet '{name}': generation 1 (")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert f"fleet '{name}': 2 worker(s) serving" in err and "Traceback" not in err
    assert len(re.findall(rf"serving generation 1 \(\w+\) as \S+ on {re.escape(runs)}\n", err)) == 2


def test_a_bad_fleet_section_exits_2_with_its_line(tmp_path):
    path = tmp_path / "plugins.yaml"
    path.write_text("plugins:\n  custom-logger: {}\nfleet:\n  workers: 0\n  wrokers: 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "helixlab", "serve", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{path}:4: fleet.workers: Input should be greater than or equal to 1" in done.stderr
    assert f"{path}:5: fleet.wrokers: unknown key 'wrokers'" in done.stderr


def test_a_worker_left_out_of_a_commit_catches_up_by_itself(config, redis_server, fleet_key):
    """As if its heartbeat had lapsed while generation 2 was committed without it."""
    from helixlab.fleet import Generation
    from helixlab.fleet._generation import configured_text
    from helixlab.fleet._signing import sign_commit

    with fleet(config, 1, redis_server.url) as sup:
        r, keys = client(redis_server.url, asyncio=False), Keys("helixlab")
        base = Generation.from_hash(r.hgetall(keys.generation(1)))
        values = {"burst_size": 42}
        missed = Generation(
            2,
            configured_text(base.config, "rate-limiter", values),
            base.source,
            change=Change.configure("rate-limiter", values),
            sources=base.sources,
            parent=1,
        ).signed(fleet_key, "helixlab")
        r.hset(keys.generation(2), mapping=missed.to_hash())
        r.set(keys.commit(2), sign_commit(fleet_key, "helixlab", 2, missed.digest))
        r.set(keys.committed, 2)
        r.close()
        wait_until(
            lambda: [w["generation"] for w in sup.status()["workers"]],
            15,
            "the worker on generation 2",
            holds=lambda generations: generations == [2],
        )
        remaining = httpx.post(sup.url + "/v1/chat/completions", json=CHAT).headers[
            "x-ratelimit-remaining-requests"
        ]
        assert int(remaining) <= 42


def test_redis_keeps_a_bounded_history_and_a_worker_behind_it_rejoins(
    config, redis_server, fleet_key
):
    from helixlab.fleet import Generation
    from helixlab.fleet._generation import KEEP_GENERATIONS, configured_text
    from helixlab.fleet._signing import sign_commit

    with fleet(config, 1, redis_server.url) as sup:
        for _ in range(KEEP_GENERATIONS + 2):
            run(propose_to(sup.redis_url, Change.reload("flaky")))
        r, keys = client(redis_server.url, asyncio=False), Keys("helixlab")
        committed = int(r.get(keys.committed))
        assert committed == KEEP_GENERATIONS + 3
        kept = [n for n in range(1, committed + 1) if r.exists(keys.generation(n))]
        assert kept == list(range(committed - KEEP_GENERATIONS + 1, committed + 1))
        # older records expire by age (ids are never reused), the kept ones do not
        assert r.ttl(keys.votes(2)) > 0 and r.ttl(keys.decision(2)) > 0
        assert r.ttl(keys.decision(committed)) == -1
        # committed elsewhere while this worker was away, with the steps between forgotten
        base = Generation.from_hash(r.hgetall(keys.generation(committed)))
        values = {"burst_size": 42}
        far = Generation(
            committed + 5,
            configured_text(base.config, "rate-limiter", values),
            base.source,
            change=Change.configure("rate-limiter", values),
            sources=base.sources,
            parent=committed + 4,  # a parent this worker never saw (not kept)
        ).signed(fleet_key, "helixlab")
        r.hset(keys.generation(far.number), mapping=far.to_hash())
        r.set(keys.commit(far.number), sign_commit(fleet_key, "helixlab", far.number, far.digest))
        r.set(keys.committed, far.number)
        r.close()
        wait_until(
            lambda: [w["generation"] for w in sup.status()["workers"]],
            30,
            f"the worker on generation {far.number}",
            holds=lambda generations: generations == [far.number],
        )
        remaining = httpx.post(sup.url + "/v1/chat/completions", json=CHAT).headers[
            "x-ratelimit-remaining-requests"
        ]
        assert int(remaining) <= 42


def test_plugin_sources_past_the_limit_are_refused_with_the_biggest_files(tmp_path):
    from helixlab.fleet._generation import read_sources

    (tmp_path / "small.py").write_text("x = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")  # a package's own files are sent
    (tmp_path / "venv" / "lib").mkdir(parents=True)
    (tmp_path / "venv" / "lib" / "huge.py").write_text("# " + "x" * 5000 + "\n")
    (tmp_path / "_vendored").mkdir()
    (tmp_path / "_vendored" / "skipped.py").write_text("# " + "x" * 5000 + "\n")
    with pytest.raises(FleetError) as caught:
        read_sources(tmp_path, limit=4096)
    message = str(caught.value)
    assert "more than 4 KiB" in message and "venv/lib/huge.py" in message
    assert "skipped.py" not in message
    assert read_sources(tmp_path, limit=8192).keys() == {
        "small.py",
        "pkg/__init__.py",
        "venv/lib/huge.py",
    }


def test_workers_stop_when_their_supervisor_is_killed(config, redis_server):
    code = (
        "import sys, time\n"
        "from helixlab.fleet import Supervisor\n"
        f"s = Supervisor({str(config)!r}, 2, redis={redis_server.url!r}, watch=False,\n"
        f"               plugins={str(config.parent / 'plugins')!r})\n"
        "s.start()\n"
        "print(*s.pids(), flush=True)\n"
        "time.sleep(600)\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in supervisor.stdout.readline().split()]
        assert len(pids) == 2
        supervisor.kill()
        supervisor.wait(10)

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

        wait_until(lambda: all(gone(pid) for pid in pids), 40, "every worker gone")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_a_config_the_workers_would_refuse_is_refused_before_any_starts(tmp_path):
    from helixlab.errors import ConfigError

    path = tmp_path / "plugins.yaml"
    path.write_text("plugins:\n  no-such-plugin: {}\n")
    with pytest.raises(ConfigError, match="no plugin named 'no-such-plugin'"):
        Supervisor(str(path), 2).start()


def test_the_admin_api_of_any_worker_reloads_the_whole_fleet(config, redis_server):
    key = "admin-key-for-the-fleet-0123"
    auth = {"Authorization": f"Bearer {key}"}
    with fleet(config, 2, redis_server.url, admin_key=key) as sup:
        done = httpx.post(sup.url + "/admin/reload", json={"plugin": "flaky"}, headers=auth)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["ok"] and body["reports"][0]["generation"] == 2
        assert len(body["reports"][0]["swapped"]) == 2
        assert [w["generation"] for w in sup.status()["workers"]] == [2, 2]
        refused = httpx.post(
            sup.url + "/admin/configure",
            json={"plugin": "flaky", "config": {"fail_slot": 0}},
            headers=auth,
        )
        assert refused.status_code == 409
        assert refused.json()["plugin"] == "flaky" and refused.json()["phase"] == "start"
        assert "rolled back on every worker" in refused.json()["text"]
        assert [w["generation"] for w in sup.status()["workers"]] == [2, 2]
