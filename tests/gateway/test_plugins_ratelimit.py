"""rate-limiter through a real Kernel, wrapping a tiny Starlette app over loopback HTTP, with an
injected clock instead of sleeps."""

from __future__ import annotations

import threading

import httpx
import pytest

import helixlab as hx
from helixlab.plugins._ratelimit import BucketStore

from test_plugins_asgi import echo_app, serving


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


def load_limiter(kernel, clock, **config):
    settings = {"requests_per_minute": 60, "burst_size": 3, **config}
    kernel.apply_config({"plugins": {"rate-limiter": {"config": settings}}})
    kernel.load_all()
    plugin = kernel.get("rate-limiter")
    plugin.store.clock = clock
    return plugin


def get(url, **headers):
    return httpx.get(url + "/echo", headers=headers)


def test_a_burst_is_allowed_then_429_with_retry_after_and_headers(kernel, clock):
    plugin = load_limiter(kernel, clock)
    with serving(plugin.get_middleware()(echo_app())) as url:
        allowed = [get(url) for _ in range(3)]
        refused = get(url)
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in allowed] == ["2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "60" for r in allowed)
    assert allowed[0].headers["x-ratelimit-reset-requests"] == "1s"
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "3s"
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert allowed[0].json()["client"] == "ip:127.0.0.1"


def test_retry_after_is_whole_seconds_rounded_up(kernel, clock):
    plugin = load_limiter(kernel, clock, requests_per_minute=7, burst_size=1)
    with serving(plugin.get_middleware()(echo_app())) as url:
        assert get(url).status_code == 200
        clock.advance(1.5)
        refused = get(url)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "8"  # 60/7 = 8.57s per token, 1.5s of it passed


def test_tokens_refill_with_time_up_to_the_burst(kernel, clock):
    plugin = load_limiter(kernel, clock)
    with serving(plugin.get_middleware()(echo_app())) as url:
        for _ in range(3):
            get(url)
        assert get(url).status_code == 429
        clock.advance(1.0)
        assert get(url).status_code == 200
        assert get(url).status_code == 429
        clock.advance(3600)
        statuses = [get(url).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_spoofed_x_forwarded_for_is_ignored_unless_trusted(kernel, clock):
    plugin = load_limiter(kernel, clock, burst_size=1)
    with serving(plugin.get_middleware()(echo_app())) as url:
        assert get(url, **{"X-Forwarded-For": "1.1.1.1"}).status_code == 200
        assert get(url, **{"X-Forwarded-For": "2.2.2.2"}).status_code == 429
    kernel.configure("rate-limiter", {"trust_forwarded": True})
    trusted = kernel.get("rate-limiter")
    with serving(trusted.get_middleware()(echo_app())) as url:
        first = get(url, **{"X-Forwarded-For": "3.3.3.3"})
        assert first.status_code == 200 and first.json()["client"] == "ip:3.3.3.3"
        assert get(url, **{"X-Forwarded-For": "4.4.4.4"}).status_code == 200
        # a client prepending its own entry does not get a new bucket: the proxy's is last
        assert get(url, **{"X-Forwarded-For": "9.9.9.9, 3.3.3.3"}).status_code == 429


def test_api_keys_get_their_own_buckets_keyed_by_a_hash(kernel, clock):
    keys = ["sk-alpha-secret", "sk-beta-secret"]
    plugin = load_limiter(kernel, clock, burst_size=1, api_keys=keys)
    with serving(plugin.get_middleware()(echo_app())) as url:
        assert get(url, Authorization="Bearer sk-alpha-secret").status_code == 200
        assert get(url, Authorization="Bearer sk-beta-secret").status_code == 200
        assert get(url, Authorization="Bearer sk-alpha-secret").status_code == 429
    keys = list(plugin.store._buckets)
    assert len(keys) == 2 and all(k.startswith("key:") for k in keys)
    assert not any("sk-" in k for k in keys)


def test_buckets_survive_a_hot_reload_so_it_is_no_way_around_the_limit(kernel, clock):
    old = load_limiter(kernel, clock)
    old_app = old.get_middleware()(echo_app())
    with serving(old_app) as url:
        for _ in range(3):
            get(url)
    report = kernel.reload("rate-limiter")
    assert report.order == ["rate-limiter"]
    new = kernel.get("rate-limiter")
    assert new is not old and new.store._buckets is old.store._buckets  # shared buckets
    with serving(new.get_middleware()(echo_app())) as url:
        assert get(url).status_code == 429
    clock.advance(1)
    with serving(old_app) as url:  # a request still on the old chain spends the same tokens
        assert get(url).status_code == 200
    with serving(new.get_middleware()(echo_app())) as url:
        assert get(url).status_code == 429


def test_configure_recaps_buckets_instead_of_resetting_them(kernel, clock):
    plugin = load_limiter(kernel, clock, burst_size=10)
    with serving(plugin.get_middleware()(echo_app())) as url:
        for _ in range(4):
            get(url)
    assert plugin.store.tokens("ip:127.0.0.1") == 6
    kernel.configure("rate-limiter", {"burst_size": 2})
    assert kernel.get("rate-limiter").store.tokens("ip:127.0.0.1") == 2  # capped
    kernel.configure("rate-limiter", {"burst_size": 50, "requests_per_minute": 120})
    store = kernel.get("rate-limiter").store
    assert store.tokens("ip:127.0.0.1") == 2  # a bigger bucket is not a refill
    clock.advance(1)
    assert store.tokens("ip:127.0.0.1") == 4  # the new rate: 2 tokens a second
    with serving(kernel.get("rate-limiter").get_middleware()(echo_app())) as url:
        response = get(url)
    assert response.headers["x-ratelimit-limit-requests"] == "120"
    assert response.headers["x-ratelimit-remaining-requests"] == "3"


def test_idle_buckets_expire_and_partly_used_ones_do_not(clock):
    store = BucketStore(60, 5, clock=clock)
    store.acquire("idle")
    for _ in range(5):
        store.acquire("busy")
    clock.advance(7)  # idle is full after 1s, busy after 5s; a refill period is 5s
    assert store.sweep() == 1
    assert "idle" not in store and "busy" in store
    clock.advance(5)
    assert store.sweep() == 1 and len(store) == 0


def test_new_clients_trigger_the_sweep_so_memory_stays_bounded(clock):
    store = BucketStore(60, 2, clock=clock)
    for i in range(100):
        store.acquire(f"client-{i}")
    clock.advance(10)
    store.acquire("newcomer")
    assert len(store) == 1


def test_max_clients_evicts_the_least_recently_used(kernel, clock):
    plugin = load_limiter(kernel, clock, max_clients=3)
    store = plugin.store
    for name in ("a", "b", "c"):
        store.acquire(name)
    store.acquire("a")  # a is now the most recently used
    store.acquire("d")
    assert len(store) == 3 and "b" not in store and {"a", "c", "d"} <= set(store._buckets)


def test_concurrent_requests_never_spend_more_than_the_bucket_holds(clock):
    store = BucketStore(60, 500, clock=clock)
    allowed = []
    lock = threading.Lock()

    def worker():
        mine = sum(store.acquire("shared").allowed for _ in range(250))
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500


def test_invalid_settings_are_config_errors(kernel):
    with pytest.raises(hx.ConfigError) as info:
        kernel.apply_config(
            {"plugins": {"rate-limiter": {"config": {"requests_per_minute": 0, "burst": 5}}}}
        )
    paths = {p.path for p in info.value.problems}
    assert paths == {"config.requests_per_minute", "config.burst"}


def test_a_rolled_back_configure_leaves_the_serving_limiter_unchanged():
    from helixlab.plugins._ratelimit import RateLimiter

    class Refuses(hx.Plugin):
        name = "refuses"
        dependencies = ("rate-limiter",)

        def start(self, ctx):
            if ctx.get("rate-limiter").config.requests_per_minute == 1:
                raise RuntimeError("not with this limit")

    with hx.Kernel() as kernel:
        kernel.register(RateLimiter)
        kernel.register(Refuses)
        kernel.load_all()
        old = kernel.get("rate-limiter")
        before = (old.store.requests_per_minute, old.store.capacity)
        with pytest.raises(hx.ReloadError):
            kernel.configure("rate-limiter", {"requests_per_minute": 1, "burst_size": 1})
        assert kernel.get("rate-limiter") is old
        assert (old.store.requests_per_minute, old.store.capacity) == before
        assert old.config.requests_per_minute == before[0]
