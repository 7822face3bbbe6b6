"""A fleet's edges, as an operator meets them (issue 21, items 5, 8, 9, 10, 11): a saved
config whose proposal failed is proposed again; the Redis password is in no argv, log or
world-readable file, and ACL users and TLS work; every Redis failure is one documented
message; the shared rate limit follows its policy on every Redis error and stays bounded;
a killed supervisor or worker leaves nothing behind. Real worker processes, a real
redis-server started here, real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helixlab.errors import FleetRedisError
from helixlab.fleet import Keys, PrivateRedis, Supervisor
from helixlab.fleet import _redis as fleet_redis
from helixlab.fleet._private import mask_values, public_url, redis_failure, state_file
from helixlab.fleet._ratestore import RedisBucketStore
from helixlab.kernel import Degraded
from helixlab.plugins._ratelimit import RateLimiterConfig

from _fleet_support import CHAT, fleet, free_port, plugins_config
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

PASSWORD = "pw-Zq81-never-shown"
SECRET = "sk-fleet-secret-0123456789"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return plugins_config(tmp_path, CONFIG)


def admin(server: PrivateRedis) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "helixlab", "fleet", *args],
        capture_output=True, text=True, timeout=90, env={**os.environ, **(env or {})},
    )  # fmt: skip


def generations(sup: Supervisor) -> list[int]:
    return sorted(w["generation"] for w in sup.status()["workers"])


# -- 5. a saved config whose proposal failed is proposed again ----------------------------


def test_a_save_proposed_while_redis_was_down_commits_once_redis_is_back(
    config, redis_server, tmp_path
):
    log = tmp_path / "fleet.log"
    with fleet(config, 2, redis_server.url, watch=True, log=log) as sup:
        assert sup.watching.wait(10)
        redis_server.stop()  # a Redis blip: the save's first proposal fails
        try:
            config.write_text(CONFIG.replace("burst_size: 1000", "burst_size: 77"))
            wait_until(lambda: "retrying in" in log.read_text(), 30, "a failed proposal retried")
        finally:
            redis_server.start()
        wait_until(
            lambda: generations(sup),
            60,
            "both workers on the save",
            holds=lambda seen: seen == [2, 2],
        )
        with httpx.Client() as c:
            r = c.post(sup.url + "/v1/chat/completions", json=CHAT)
        assert int(r.headers["x-ratelimit-remaining-requests"]) < 77
        text = log.read_text()
        assert "failed: The fleet's Redis at unix://" in text and "cannot be reached" in text
        assert "apply" in text and ": commit" in text


def test_a_refused_save_is_not_retried_but_saving_it_again_proposes_it_again(
    config, redis_server, tmp_path
):
    log = tmp_path / "fleet.log"
    refused = CONFIG.replace("  flaky:\n    config: {}", "  flaky:\n    config: {fail_slot: 0}")
    with fleet(config, 2, redis_server.url, watch=True, log=log) as sup:
        assert sup.watching.wait(10)
        config.write_text(refused)
        wait_until(
            lambda: log.read_text().count("rolled back on every worker") == 1, 30, "one rollback"
        )
        time.sleep(1.5)  # past the first retry's delay: a refusal is not retried
        assert log.read_text().count("rolled back on every worker") == 1
        assert "retrying" not in log.read_text()
        config.write_text(refused)  # saved again: proposed again (and refused again)
        wait_until(
            lambda: log.read_text().count("rolled back on every worker") == 2, 30, "two rollbacks"
        )
        config.write_text(CONFIG.replace("burst_size: 1000", "burst_size: 55"))
        wait_until(lambda: ": commit" in log.read_text(), 30, "the good save committed")
        assert len({w["generation"] for w in sup.status()["workers"]}) == 1
        with httpx.Client() as c:
            r = c.post(sup.url + "/v1/chat/completions", json=CHAT)
        assert int(r.headers["x-ratelimit-remaining-requests"]) < 55


def test_which_failed_proposals_the_watcher_retries():
    from helixlab.errors import FleetError
    from helixlab.fleet import FleetReport
    from helixlab.fleet._watch import _refused_by_content

    def failed(**vote) -> FleetError:
        report = FleetReport(2, "apply x", "abort", votes={"w1": {"ok": True}, "w2": vote})
        return FleetError("rolled back", report=report)

    transient = dict(ok=False, plugin=None, phase="prepare")
    for why in (
        "left the fleet: its heartbeat expired",
        "no answer within 30s",
        "busy: draining generation 3 within 30s",
        "this worker serves 3, not 2",
    ):
        assert not _refused_by_content(failed(**transient, error=why))  # retried
    assert not _refused_by_content(FleetRedisError("Redis down"))  # retried
    assert not _refused_by_content(FleetError("The fleet 'x' is busy"))  # retried
    assert _refused_by_content(failed(ok=False, plugin="flaky", phase="start", error="no"))
    assert _refused_by_content(failed(ok=False, plugin=None, phase="config", error="bad YAML"))
    assert _refused_by_content(failed(ok=False, plugin=None, phase="verify", error="unsigned"))


# -- 8. the Redis password: no argv, no log, no world-readable file; ACL users; TLS -------


def _acl_user(server: PrivateRedis, user: str = "fleet", password: str = PASSWORD) -> str:
    """An ACL user for the fleet and the default user off: only that user gets in."""
    a = admin(server)
    a.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    a.execute_command("ACL", "SETUSER", "default", "off")
    a.close()
    return f"redis://{user}:{password}@127.0.0.1:{server.port}"


def test_the_redis_password_is_in_no_argv_log_or_world_readable_file(
    config, redis_server, tmp_path
):
    url = _acl_user(redis_server)
    name = f"pw{os.getpid()}"
    path = tmp_path / "fleet.yaml"  # the password given in the YAML, as the issue has it
    path.write_text(
        CONFIG + f"fleet:\n  workers: 2\n  name: {name}\n  redis: {url}\n"
        f"plugin_dirs: [{config.parent / 'plugins'}]\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "helixlab", "serve", str(path), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HELIXLAB_REDIS": ""},
    )  # fmt: skip
    try:
        served = process.stdout.readline().strip()
        assert served.startswith("http://"), served or process.stderr.read()
        # `helixlab fleet status` finds the fleet by its state file (no --redis)
        status = cli("status", "--json", "--fleet", name, env={"HELIXLAB_REDIS": ""})
        assert status.returncode == 0, status.stderr
        pids = [w["pid"] for w in json.loads(status.stdout)["workers"]]
        assert len(pids) == 2
        for pid in [process.pid, *pids]:  # what `ps` shows every user
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            assert PASSWORD not in argv, argv
        for pid in pids:  # the worker got it through its environment (0400, its own)
            assert PASSWORD.encode() in Path(f"/proc/{pid}/environ").read_bytes()
        state = state_file(name)
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
        assert state.parent.stat().st_uid == os.getuid()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert PASSWORD not in err and f"redis://fleet:***@127.0.0.1:{redis_server.port}" in err
    assert not state.exists()


def test_the_state_directory_is_private_and_refused_when_not_ours(tmp_path, monkeypatch):
    import tempfile

    from helixlab.errors import FleetError
    from helixlab.fleet._private import state_dir, write_private

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    loose = tmp_path / f"helixlab-{os.getuid()}"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert state_dir() == loose and stat.S_IMODE(loose.stat().st_mode) == 0o700  # closed
    target = tmp_path / "elsewhere"
    (loose / "fleet-x.json").symlink_to(target)  # planted: replaced, never followed
    write_private(loose / "fleet-x.json", "{}")
    assert not target.exists() and stat.S_IMODE((loose / "fleet-x.json").stat().st_mode) == 0o600
    loose.rename(tmp_path / "moved")
    (tmp_path / f"helixlab-{os.getuid()}").symlink_to(tmp_path / "moved")  # not a directory
    with pytest.raises(FleetError, match="not a directory of user"):
        state_dir()
    if os.getuid() == 0:  # as root, a directory another user owns can be made here
        (tmp_path / f"helixlab-{os.getuid()}").unlink()
        theirs = tmp_path / f"helixlab-{os.getuid()}"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(FleetError, match="not a directory of user"):
            state_dir()


def test_an_acl_user_with_a_password_runs_a_fleet(config, redis_server, tmp_path):
    url = _acl_user(redis_server, "gateway", "acl-pass-0042")
    log = tmp_path / "fleet.log"
    with fleet(config, 2, url, log=log) as sup:
        assert sup.reload("flaky").outcome == "commit"
        assert generations(sup) == [2, 2]
    assert "acl-pass-0042" not in log.read_text()
    wrong = url.replace("acl-pass-0042", "wrong-pass-0042")
    done = cli("status", "--redis", wrong)
    assert done.returncode == 3 and "refused the credentials" in done.stderr
    assert "wrong-pass-0042" not in done.stderr and "Traceback" not in done.stderr


def test_a_refused_redis_is_named_without_its_password(config, redis_server):
    from helixlab.errors import FleetError

    url = _acl_user(redis_server)
    a = redis.Redis.from_url(url)
    a.config_set("maxmemory-policy", "allkeys-lru")  # refused: it could evict the generation
    a.close()
    with pytest.raises(FleetError, match="evicts any key") as caught:
        fleet(config, 1, url).start()
    assert PASSWORD not in str(caught.value) and "fleet:***@" in str(caught.value)


def _tls_redis(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """redis-server with TLS only (a CA and a server certificate made here by openssl)."""
    d = tmp_path / "tls"
    d.mkdir()

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "server.crt")  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [fleet_redis.redis_binary(), "--port", "0", "--tls-port", str(port),
         "--bind", "127.0.0.1", "--tls-cert-file", str(d / "server.crt"),
         "--tls-key-file", str(d / "server.key"), "--tls-ca-cert-file", str(d / "ca.crt"),
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "",
         "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}?ssl_ca_certs={d / 'ca.crt'}"
    probe = redis.Redis.from_url(url)
    try:
        wait_until(lambda: _pings(probe), 15, "redis-server with TLS")
    finally:
        probe.close()
    return server, url


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except (redis.RedisError, OSError):
        return False


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to make certificates")
def test_a_fleet_runs_on_redis_over_tls(config, tmp_path):
    server, url = _tls_redis(tmp_path)
    log = tmp_path / "fleet.log"
    try:
        with fleet(config, 2, url, log=log) as sup:
            assert sup.configure("flaky", note="over tls").outcome == "commit"
            assert generations(sup) == [2, 2]
            done = cli("status", "--redis", url)
            assert done.returncode == 0 and "generation 2" in done.stdout, done.stderr
    finally:
        server.terminate()
        server.wait(10)
    assert PASSWORD not in log.read_text()


# -- 9. every Redis failure a documented message; secrets masked; options anywhere --------


def test_with_redis_down_the_cli_says_one_line_and_exits_3():
    url = f"redis://ops:{PASSWORD}@127.0.0.1:{free_port()}"  # nothing listens there
    for args in (
        ("status", "--redis", url),  # the option after the action
        ("--redis", url, "status"),
        ("reload", "flaky", "--redis", url, "--timeout", "2"),
        ("--redis", url, "configure", "flaky", "x=1"),
    ):
        done = cli(*args, env={"HELIXLAB_FLEET_KEY": "k" * 64})  # signed, were it sent
        assert done.returncode == 3, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "cannot be reached" in lines[0] and "ops:***@127.0.0.1" in lines[0]
        assert PASSWORD not in done.stderr + done.stdout


def test_fleet_options_go_before_or_after_the_action(config, redis_server):
    with fleet(config, 1, redis_server.url):
        before = cli("--redis", redis_server.url, "--fleet", "helixlab", "status", "--json")
        after = cli("status", "--json", "--redis", redis_server.url, "--fleet", "helixlab")
        assert before.returncode == after.returncode == 0, before.stderr + after.stderr
        assert json.loads(before.stdout)["generation"] == json.loads(after.stdout)["generation"]
        other = cli("--fleet", "helixlab", "status", "--redis", redis_server.url, "--fleet", "x")
        assert "No fleet" in other.stdout + other.stderr or "generation None" in other.stdout


def test_a_configured_secret_is_masked_in_every_fleet_answer(config, redis_server):
    key = "admin-key-for-the-fleet-0123"
    auth = {"Authorization": f"Bearer {key}"}
    with fleet(config, 2, redis_server.url, admin_key=key) as sup:
        done = cli("--redis", redis_server.url, "configure", "flaky", f"api_key={SECRET}")
        assert done.returncode == 0, done.stderr
        assert "api_key=" in done.stdout and SECRET not in done.stdout + done.stderr
        refused = cli("--redis", redis_server.url, "configure", "flaky", "fail_slot=1",
                      f"api_key={SECRET}x")  # fmt: skip
        assert refused.returncode == 1 and "rolled back" in refused.stderr
        assert SECRET not in refused.stdout + refused.stderr
        with httpx.Client(timeout=60) as c:
            answer = c.post(
                sup.url + "/admin/configure",
                json={"plugin": "flaky", "config": {"api_key": SECRET + "y"}},
                headers=auth,
            )
            assert answer.status_code == 200, answer.text
            assert SECRET not in answer.text and "***" in answer.text
            failed = c.post(
                sup.url + "/admin/configure",
                json={"plugin": "flaky", "config": {"fail_slot": 0, "api_key": SECRET + "z"}},
                headers=auth,
            )
        assert failed.status_code == 409 and SECRET not in failed.text
        assert failed.json()["error"]["message"]  # the OpenAI shape, beside the report


def test_with_redis_down_the_admin_api_answers_503_in_the_openai_shape(config, redis_server):
    key = "admin-key-for-the-fleet-0123"
    auth = {"Authorization": f"Bearer {key}"}
    with fleet(config, 1, redis_server.url, admin_key=key) as sup:
        redis_server.stop()
        try:
            with httpx.Client(timeout=60) as c:
                for path, body in (
                    ("/admin/reload", {"plugin": "flaky"}),
                    ("/admin/configure", {"plugin": "flaky", "config": {"x": 1}}),
                ):
                    r = c.post(sup.url + path, json=body, headers=auth)
                    assert r.status_code == 503, r.text
                    error = r.json()["error"]
                    assert error["code"] == "fleet_redis_unavailable"
                    assert "cannot be reached" in error["message"]
                    assert r.json()["ok"] is False
            with pytest.raises(FleetRedisError, match="cannot be reached"):  # from Python too
                sup.reload("flaky")
            with pytest.raises(FleetRedisError, match="cannot be reached"):
                sup.status()
        finally:
            redis_server.start()


def test_redis_failures_map_to_one_documented_error():
    url = f"redis://u:{PASSWORD}@h:1"
    for exc, words in (
        (redis.ConnectionError("Error 111 connecting"), "cannot be reached"),
        (redis.TimeoutError("Timeout reading"), "cannot be reached"),
        (ConnectionRefusedError(111, "refused"), "cannot be reached"),
        (redis.exceptions.OutOfMemoryError("OOM command not allowed"), "refused a command"),
        (redis.exceptions.ReadOnlyError("READONLY replica"), "refused a command"),
        (redis.exceptions.NoPermissionError("NOPERM no permissions"), "refused a command"),
        (redis.AuthenticationError("invalid username-password pair"), "refused the credentials"),
    ):
        failure = redis_failure(exc, url)
        assert isinstance(failure, FleetRedisError) and words in str(failure)
        assert PASSWORD not in str(failure) and failure.url == "redis://u:***@h:1"
    assert redis_failure(ValueError("x"), url) is None


@given(
    st.text(alphabet=st.characters(blacklist_characters="@/: \t\r\n"), min_size=1),
    st.sampled_from(["redis", "rediss"]),
)
def test_public_url_never_shows_a_password(password, scheme):
    url = f"{scheme}://user:{password}@host:6379/0?ssl_cert_reqs=none"
    assert public_url(f"at {url}: failed") == (
        f"at {scheme}://user:***@host:6379/0?ssl_cert_reqs=none: failed"
    )
    assert public_url(f"{scheme}://:{password}@h:1") == f"{scheme}://:***@h:1"


def test_mask_values_masks_secret_settings_only():
    text = f'generation 3: configure p api_key="{SECRET}" retries=3 token={SECRET}'
    masked = mask_values(text, {"api_key": SECRET, "retries": 3})
    assert SECRET not in masked and "retries=3" in masked


# -- 10. shared limits: every Redis error follows the policy; bounded per-client keys ------


def _store(url: str, policy: str = "open", **config) -> RedisBucketStore:
    limits = RateLimiterConfig(**{"requests_per_minute": 60, "burst_size": 10, **config})
    return RedisBucketStore(url, Keys("edges"), limits, policy=policy)


def _fault_oom(a: redis.Redis):
    a.config_set("maxmemory-policy", "noeviction")
    a.config_set("maxmemory", 1)
    return lambda: a.config_set("maxmemory", 0)


def _fault_readonly(a: redis.Redis):
    a.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # a failover's old primary
    return lambda: a.execute_command("REPLICAOF", "NO", "ONE")


def _fault_noperm(a: redis.Redis):
    a.execute_command("ACL", "SETUSER", "limited", "on", ">limited-pass", "~*", "+ping", "+get")
    return lambda: None


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (_fault_oom, "OutOfMemoryError"),
        (_fault_readonly, "ReadOnlyError"),
        (_fault_noperm, "NoPermissionError"),
    ],
)
def test_every_redis_error_follows_the_policy_and_shows_in_health(redis_server, fault, words):
    a = admin(redis_server)
    url = f"redis://127.0.0.1:{redis_server.port}"
    undo = fault(a)
    if fault is _fault_noperm:
        url = f"redis://limited:limited-pass@127.0.0.1:{redis_server.port}"
    try:
        closed, opened = _store(url, "closed"), _store(url, "open")
        assert not asyncio.run(closed.acquire("ip:1.2.3.4")).allowed  # refused: 429
        with pytest.raises(ConnectionError, match=words) as caught:
            closed.health()
        assert "refused with 429" in str(caught.value)
        assert asyncio.run(opened.acquire("ip:1.2.3.4")).allowed  # admitted, unlimited
        degraded = opened.health()
        assert isinstance(degraded, Degraded) and words in degraded
        assert degraded.startswith("degraded: limits not enforced")
        assert "limited-pass" not in str(caught.value) + degraded
    finally:
        undo()
        a.close()
    assert _store(f"redis://127.0.0.1:{redis_server.port}").health() is None


def test_per_client_buckets_are_bounded_by_max_clients_and_expire_when_full(redis_server):
    a = admin(redis_server)
    store = _store(redis_server.url, max_clients=5)  # 1 token a second, bursts of 10

    async def take(clients):
        for client in clients:
            await store.acquire(client)

    asyncio.run(take([f"ip:10.0.0.{i}" for i in range(50)]))  # a client rotating addresses
    buckets = a.keys(Keys("edges").bucket("*"))
    assert len(buckets) <= 5 and a.zcard(store.index) <= 5
    # one token taken: full again in 1 s, and gone then (not after the full 10 s refill)
    assert 0 < a.pttl(buckets[0]) <= 1001
    wait_until(lambda: not a.keys(Keys("edges").bucket("*")), 5, "buckets expired")
    wait_until(lambda: not a.exists(store.index), 5, "the index expired")
    a.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    most=st.integers(1, 8),
    requests=st.lists(st.integers(0, 30), min_size=1, max_size=60),
)
def test_redis_never_holds_more_buckets_than_max_clients(redis_server, most, requests):
    a = admin(redis_server)
    a.flushall()
    store = _store(redis_server.url, max_clients=most, requests_per_minute=6, burst_size=3)

    async def take():
        for client in requests:
            decision = await store.acquire(f"ip:{client}")
            assert decision.limit == 6
            assert len(a.keys(Keys("edges").bucket("*"))) <= most

    asyncio.run(take())
    assert a.zcard(store.index) <= most
    a.close()


def test_policy_open_with_redis_down_keeps_the_fleet_in_rotation(config, redis_server):
    """What a load balancer sees: under policy open, 200 {"status": "degraded"} (no detail
    without auth); under policy closed, every request refused with 429 and /health 503
    (health is answered outside the plugin chain, never itself limited): out of rotation."""
    with fleet(config, 2, redis_server.url) as sup:
        redis_server.stop()
        try:
            with httpx.Client(timeout=30) as c:
                for _ in range(6):  # fresh connections: both workers
                    health = c.get(sup.url + "/health", headers={"Connection": "close"})
                    assert health.status_code == 200, health.text
                    assert health.json() == {"status": "degraded"}
                chat = c.post(sup.url + "/v1/chat/completions", json=CHAT)
                assert chat.status_code == 200
        finally:
            redis_server.start()
    # each its own fleet name: a fleet joining a Redis serves the generation it finds there
    with fleet(config, 1, redis_server.url, rate_limit_policy="closed", fleet="c1") as sup:
        redis_server.stop()
        try:
            with httpx.Client(timeout=30) as c:
                health = c.get(sup.url + "/health")
                assert health.status_code == 503 and health.json()["status"] == "unavailable"
                assert c.post(sup.url + "/v1/chat/completions", json=CHAT).status_code == 429
        finally:
            redis_server.start()


# -- 11. orphans: a killed supervisor or worker leaves nothing behind --------------------


def test_a_killed_supervisor_leaves_no_redis_no_workers_no_files(config):
    name = f"orphan{os.getpid()}"
    code = (
        "import json, time\n"
        "from helixlab.fleet import Supervisor\n"
        f"s = Supervisor({str(config)!r}, 2, fleet={name!r}, watch=False,\n"
        f"               plugins={str(config.parent / 'plugins')!r})\n"
        "s.start()\n"
        "print(json.dumps({'redis': s.private.process.pid, 'workers': s.pids(),\n"
        "    'dirs': [str(s.run_dir), str(s.private.dir), str(s.private.socket.parent)]}),\n"
        "    flush=True)\n"
        "time.sleep(600)\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        facts = json.loads(supervisor.stdout.readline())
        state = state_file(name)
        assert state.exists() and not gone(facts["redis"])
        assert all(Path(d).is_dir() for d in facts["dirs"])
        copies = list(Path(facts["dirs"][0]).glob("w*/helixlab-worker-plugins-*/flaky.py"))
        assert len(copies) == 2  # each worker's copy of the generation's sources
        supervisor.kill()  # kill -9: no finally runs in it
        supervisor.wait(10)
        wait_until(lambda: all(gone(p) for p in facts["workers"]), 60, "workers gone")
        wait_until(lambda: gone(facts["redis"]), 60, "the private redis-server gone")
        wait_until(lambda: not any(Path(d).exists() for d in facts["dirs"]), 30, "dirs removed")
        wait_until(lambda: not state.exists(), 10, "the state file removed")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_a_sigkilled_workers_copy_of_the_plugin_sources_is_removed(config, redis_server):
    with fleet(config, 1, redis_server.url) as sup:
        (pid,) = sup.pids()
        (copy,) = sup.run_dir.glob("w0-*/helixlab-worker-plugins-*")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not copy.exists(), 30, "the dead worker's copy removed")
        wait_until(lambda: sup.pids() != [pid] and len(generations(sup)) == 1, 60, "restarted")
        copies = list(sup.run_dir.glob("w0-*/helixlab-worker-plugins-*"))
        assert len(copies) == 1 and copies[0] != copy  # the new worker's own
