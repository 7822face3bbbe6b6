"""Limits a client cannot dodge, through the real gateway on loopback: the rate limit keys on
verified identities only (invented tokens share their address's bucket, and one address holds
a bounded number of buckets), and a hanging server-side tool is cut off by its timeout and
answered to the model as a tool error."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from test_plugins_auth import AUDIENCE, SECRET, claims

import helixlab as hx
from helixlab.llm import Tool

from _gateway_support import provider_plugin

COURSE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "plugins.yaml"


def test_made_up_tokens_cannot_dodge_the_course_configs_limit() -> None:
    with hx.Kernel.from_config(COURSE_CONFIG) as kernel:
        assert kernel.load_all().ok
        kernel.get("rate-limiter").store.clock = lambda: 1000.0  # frozen: no refill, at any speed
        with kernel.serve() as server, httpx.Client(base_url=server.url) as http:
            statuses = [
                http.get("/v1/models", headers={"Authorization": f"Bearer made-up-{i}"}).status_code
                for i in range(40)
            ]
        store = kernel.get("rate-limiter").store
        assert statuses.count(200) == 20 and statuses.count(429) == 20  # the 20-burst holds
        assert list(store._buckets) == ["ip:127.0.0.1"]  # one bucket, not 41


def limited(kernel: hx.Kernel, **config: Any) -> Any:
    settings = {"requests_per_minute": 60, "burst_size": 2, **config}
    kernel.register(provider_plugin())
    kernel.apply_config({"plugins": {"rate-limiter": {"config": settings}}})
    assert kernel.load_all().ok
    kernel.get("rate-limiter").store.clock = lambda: 1000.0  # frozen: no refill
    return kernel.serve()


def statuses(url: str, token: str, n: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    return [httpx.get(url + "/v1/models", headers=headers).status_code for _ in range(n)]


def test_configured_api_keys_are_verified_identities_with_buckets_of_their_own(kernel) -> None:
    server = limited(kernel, api_keys=["sk-team-a-0001", "sk-team-b-0002"])
    assert statuses(server.url, "sk-team-a-0001", 3) == [200, 200, 429]
    assert statuses(server.url, "sk-team-b-0002", 3) == [200, 200, 429]
    assert statuses(server.url, "invented-1", 1) + statuses(server.url, "invented-2", 2) == [
        200,
        200,
        429,
    ]  # unverified: the address's bucket
    keys = list(kernel.get("rate-limiter").store._buckets)
    assert len(keys) == 3 and sum(k.startswith("key:") for k in keys) == 2
    assert not any("sk-team" in k for k in keys)


def test_one_address_holds_a_bounded_number_of_identities(kernel) -> None:
    keys = [f"sk-member-{i:04d}" for i in range(6)]
    server = limited(kernel, api_keys=keys, max_keys_per_address=3)
    for key in keys:
        statuses(server.url, key, 1)
    buckets = list(kernel.get("rate-limiter").store._buckets)
    assert len(buckets) == 4  # three identities, then the address's own bucket
    assert "ip:127.0.0.1" in buckets


def test_custom_auth_claims_are_the_identity_when_it_runs_first(kernel) -> None:
    kernel.register(provider_plugin())
    kernel.apply_config(
        {
            "plugins": {
                "custom-auth": {
                    "priority": 100,
                    "config": {"secret": SECRET, "audience": AUDIENCE},
                },
                "rate-limiter": {"config": {"requests_per_minute": 60, "burst_size": 2}},
            }
        }
    )
    assert kernel.load_all().ok
    kernel.get("rate-limiter").store.clock = lambda: 1000.0
    server = kernel.serve()
    alice = jwt.encode(claims(sub="alice"), SECRET, algorithm="HS256")
    bob = jwt.encode(claims(sub="bob"), SECRET, algorithm="HS256")
    assert statuses(server.url, alice, 3) == [200, 200, 429]
    assert statuses(server.url, bob, 2) == [200, 200]
    assert statuses(server.url, "forged.not.signed", 1) == [401]  # refused before the limit
    assert set(kernel.get("rate-limiter").store._buckets) == {"sub:alice", "sub:bob"}


# -- server-side tools under a timeout ---------------------------------------------------------

RELEASE = threading.Event()


async def stall(reason: str) -> str:
    """Never answers (until the test ends)."""
    await asyncio.Event().wait()
    return reason


def block(reason: str) -> str:
    """A plain function that blocks its worker thread."""
    RELEASE.wait(30)
    return reason


class StallingTools(hx.ToolPlugin):
    name = "stalling-tools"
    tool_timeout = 0.5

    def get_tools(self) -> list[Tool]:
        return [Tool.from_function(stall), Tool.from_function(block)]


@pytest.fixture
def tool_server(kernel) -> Any:
    RELEASE.clear()
    kernel.register(provider_plugin())
    kernel.register(StallingTools)
    assert kernel.load_all().ok
    server = kernel.serve(execute_tools=True)
    yield server
    RELEASE.set()


@pytest.mark.parametrize("tool", ["stall", "block"])
def test_a_hanging_tool_times_out_into_a_tool_error_for_the_model(tool_server, tool) -> None:
    body = {"model": "fake-small", "messages": [{"role": "user", "content": f"{tool} reason=x"}]}
    started = time.monotonic()
    response = httpx.post(tool_server.url + "/v1/chat/completions", json=body, timeout=20)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    assert f"The {tool} tool returned: Error: the tool {tool!r} did not finish within 0.5s" in (
        content
    )
    assert elapsed < 5


def test_a_reload_does_not_wait_for_a_hanging_tool(kernel, tool_server) -> None:
    body = {"model": "fake-small", "messages": [{"role": "user", "content": "stall reason=x"}]}
    done: list[int] = []
    thread = threading.Thread(
        target=lambda: done.append(
            httpx.post(tool_server.url + "/v1/chat/completions", json=body, timeout=20).status_code
        )
    )
    thread.start()
    started = time.monotonic()
    kernel.reload("stalling-tools")
    thread.join(10)
    assert done == [200] and time.monotonic() - started < 5


def test_builtin_tools_take_their_timeout_from_their_config(kernel) -> None:
    kernel.apply_config({"plugins": {"builtin-tools": {"config": {"timeout": "250ms"}}}})
    kernel.load_all()
    assert kernel.get("builtin-tools").tool_timeout == 0.25
