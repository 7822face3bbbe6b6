"""The gateway with the built-in plugins from YAML, as the course configures them: JWT auth,
rate limiting (with its buckets surviving hot reloads), request logging, the embedded
upstream through custom-provider, and the calculator run server-side."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import openai
import pytest

import helixlab as hx

SECRET = "a-test-secret-of-at-least-32-bytes!!"
CONFIG = f"""\
plugins:
  custom-logger:
    priority: 40   # loads first, so request-logger (which needs it) can be the outermost
    config: {{output: memory}}
  request-logger:
    priority: 30
    config: {{skip_paths: [/health]}}
  custom-auth:
    priority: 20
    config:
      secret: "{SECRET}"
      issuer: helixlab-tests
      audience: gateway
      allowed_roles: [developer]
  rate-limiter:
    priority: 10
    config: {{requests_per_minute: 1, burst_size: 4}}
  custom-provider:
    config: {{}}
  builtin-tools:
    config: {{}}
"""


def token(roles: list[str], sub: str = "alice") -> str:
    claims = {
        "sub": sub,
        "roles": roles,
        "iss": "helixlab-tests",
        "aud": "gateway",
        "exp": int(time.time()) + 600,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def kernel() -> Iterator[hx.Kernel]:
    with hx.Kernel.from_config(CONFIG) as k:
        assert k.load_all().ok
        yield k


@pytest.fixture(scope="module")
def base_url(kernel: hx.Kernel) -> str:
    return kernel.serve().openai_base_url


def client(base_url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)


def ask(c: openai.OpenAI, text: str = "hi", **kwargs) -> str:
    reply = c.chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": text}], **kwargs
    )
    return reply.choices[0].message.content


def test_the_chain_follows_the_graph(kernel: hx.Kernel, base_url: str) -> None:
    state = kernel.lease()
    try:
        chain = state.extras["gateway"].middleware
    finally:
        state.release()
    kinds = {row.name: row.kind for row in kernel.info()}
    assert chain == tuple(n for n in kernel.graph.load_order() if kinds[n] == "middleware")
    assert chain == ("request-logger", "custom-auth", "rate-limiter")  # logs 401s and 429s too


def test_auth_401_403_then_rate_limit_429_surviving_reloads(
    kernel: hx.Kernel, base_url: str
) -> None:
    with pytest.raises(openai.AuthenticationError):
        ask(client(base_url, "not-a-jwt"))
    with pytest.raises(openai.PermissionDeniedError):
        ask(client(base_url, token(["viewer"])))
    dev = client(base_url, token(["developer"], sub="bob"))
    assert ask(
        dev,
        "server side calculator expression: '6*7'",
        extra_body={"helixlab": {"execute_tools": True}},
    ).endswith("returned: 42")
    for _ in range(3):
        ask(dev)  # the rest of bob's burst of 4
    for plugin in ("rate-limiter", "custom-auth", "request-logger", "custom-provider"):
        kernel.reload(plugin)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(dev)  # a reload is never a way around the limit
        assert int(caught.value.response.headers["retry-after"]) >= 1


def test_streaming_through_the_real_chain(base_url: str) -> None:
    c = client(base_url, token(["developer"], sub="carol"))
    stream = c.chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": "stream me"}], stream=True
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == (
        "Echo: stream me"
    )


def test_an_upstream_refusing_the_gateways_key_is_a_502_not_the_clients_401():
    """The client's key is fine: telling it 401 would send it hunting the wrong problem."""
    from helixlab import mockllm

    with mockllm.start(api_key="sk-the-right-one") as upstream, hx.Kernel() as kernel:
        config = f"plugins:\n  custom-provider:\n    config:\n      api_url: {upstream.url}\n"
        kernel.apply_config(config + "      api_key: sk-a-wrong-one\n      retry_count: 0\n")
        kernel.load_all()
        with kernel.serve() as server:
            body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}
            response = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error" and "answered 401" in error["message"]
    assert "sk-a-wrong-one" not in response.text
