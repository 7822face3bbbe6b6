"""The lab self-checks of labs 2 and 3 (the gateway labs), driven through a real Kernel and a
namespace dict.

Each lab is exercised with plugins written like its solution (every check passes) and like
its starter code (the right checks fail, each with a hint that says what is missing and
where to look), plus a few mistakes the starter does not make: the checks probe behaviour
(requests sent, reloads performed, statuses and replies observed), so they must catch them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import Field

import helixlab as hx
from helixlab import mockllm
from helixlab.checks import run_check
from helixlab.errors import CheckFailed
from helixlab.gateway import error_response
from helixlab.llm import ChatRequest, ChatResponse, ProviderCapabilities, StreamChunk, ToolCall


@pytest.fixture
def helix(make_kernel) -> hx.Kernel:
    return make_kernel(timeouts=hx.Timeouts())  # a learner's kernel: the default timeouts


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    with mockllm.start() as server:
        yield server


def results(report) -> dict[str, tuple[bool, str]]:
    return {r.description: (r.passed, r.hint) for r in report.results}


def failing(report) -> dict[str, str]:
    return {r.description: r.hint for r in report.results if not r.passed}


def loaded(kernel: hx.Kernel, *classes: type[hx.Plugin]) -> hx.Kernel:
    for cls in classes:
        kernel.register(cls)
    assert kernel.load_all().ok
    return kernel


# -- lab 2: the provider, written as the lab's solution and as its starter ------------------


def solution_to_upstream(request: ChatRequest) -> dict:
    body: dict[str, Any] = {"model": request.model}
    body["messages"] = [message.to_openai() for message in request.messages]
    if request.tools:
        body["tools"] = [tool.to_openai() for tool in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = request.tool_choice
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    body.update(request.extra)
    return body


def solution_from_upstream(data: dict) -> ChatResponse:
    choice = data["choices"][0]
    message = choice["message"]
    calls = [
        ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
        for c in message.get("tool_calls") or []
    ]
    return ChatResponse(
        model=data["model"],
        content=message.get("content"),
        tool_calls=calls,
        finish_reason=choice["finish_reason"],
    )


def solution_parse_sse_line(line: str) -> StreamChunk | None:
    if not line.startswith("data:"):
        return None
    payload = line.removeprefix("data:").strip()
    if payload == "[DONE]":
        return None
    return StreamChunk.from_openai(json.loads(payload))


def starter_to_upstream(request: ChatRequest) -> dict:
    return {"model": request.model, "messages": []}


def starter_from_upstream(data: dict) -> ChatResponse:
    choice = data["choices"][0]
    return ChatResponse(model=data["model"], content="", finish_reason=choice["finish_reason"])


def starter_parse_sse_line(line: str) -> StreamChunk | None:
    return None


def provider_class(
    api_url: str,
    to_upstream: Callable = solution_to_upstream,
    from_upstream: Callable = solution_from_upstream,
    parse_sse_line: Callable = solution_parse_sse_line,
    models: tuple[str, ...] = ("mock-small", "mock-large"),
    health: bool = True,
) -> type[hx.ProviderPlugin]:
    """The lab's ``lab-provider``, with the three functions the learner fills in."""

    class LabProviderConfig(hx.PluginConfig):
        api_url: str = ""
        models: list[str] = Field(default_factory=lambda: list(models))
        timeout: float = 10.0

    LabProviderConfig.model_fields["api_url"].default = api_url
    LabProviderConfig.model_rebuild(force=True)

    class LabLLM:
        def __init__(self, config: LabProviderConfig):
            self.config = config

        def client(self) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=self.config.api_url, timeout=self.config.timeout)

        def capabilities(self) -> ProviderCapabilities:
            return ProviderCapabilities(supports_tools=True, models=tuple(self.config.models))

        async def complete(self, request: ChatRequest) -> ChatResponse:
            async with self.client() as client:
                response = await client.post("/chat/completions", json=to_upstream(request))
                response.raise_for_status()
                return from_upstream(response.json())

        async def complete_stream(self, request: ChatRequest):
            body = {**to_upstream(request), "stream": True}
            async with (
                self.client() as client,
                client.stream("POST", "/chat/completions", json=body) as response,
            ):
                response.raise_for_status()
                async for line in response.aiter_lines():
                    chunk = parse_sse_line(line)
                    if chunk is not None:
                        yield chunk

        async def health_check(self) -> None:
            if not health:
                return
            async with self.client() as client:
                response = await client.get("/models")
                response.raise_for_status()

    class LabProvider(hx.ProviderPlugin):
        name = "lab-provider"
        version = "1.0.0"
        config_model = LabProviderConfig

        def init(self, ctx, config):
            self.provider = LabLLM(config)

        def get_provider(self):
            return self.provider

        async def health_check(self, ctx):
            await self.provider.health_check()

    return LabProvider


LAB2 = [
    "lab-provider is registered and active in helix",
    'a completion returns the upstream\'s reply, "Echo: <your message>", as a ChatResponse',
    "streaming yields several chunks that add up to the full reply",
    "chunks reach the caller while the upstream is still streaming",
    "temperature, max_tokens and extra fields (seed, top_p, ...) reach the upstream",
    "a tool offered comes back as a ToolCall, and the tool's result gets a final answer",
    "capabilities list the models, and the gateway routes each model to its provider",
    "lab-provider is healthy: its health check reaches the upstream",
]


def test_lab2_solution_passes_every_check(helix, upstream):
    loaded(helix, provider_class(upstream.url))
    report = run_check("lab2", helix, {"helix": helix})
    assert [r.description for r in report.results] == LAB2
    assert report.passed, str(report)
    assert run_check("lab2", helix, {}, strict=True).passed


def test_lab2_checks_leave_the_notebook_plugin_alone(helix, upstream):
    loaded(helix, provider_class(upstream.url))
    before, sent = helix.get("lab-provider"), len(upstream.requests)
    run_check("lab2", helix, {})
    assert helix.get("lab-provider") is before
    assert helix.reload_count("lab-provider") == 0
    assert len(upstream.requests) == sent  # the checks used their own upstream


def test_lab2_starter_shows_the_gaps_with_hints(helix, upstream):
    starter = provider_class(
        upstream.url, starter_to_upstream, starter_from_upstream, starter_parse_sse_line
    )
    loaded(helix, starter)
    report = run_check("lab2", helix, {})
    got = results(report)
    assert got[LAB2[0]] == (True, "")
    assert got[LAB2[7]] == (True, "")
    hints = failing(report)
    assert set(hints) == set(LAB2[1:7])
    no_messages = (
        "the upstream received a request without messages and refused it (400): to_upstream() "
        "must put the request's messages in the body, each as message.to_openai() (step 2)."
    )
    assert hints[LAB2[1]] == no_messages
    assert hints[LAB2[2]] == no_messages
    assert "complete_stream yielded no chunk at all" in hints[LAB2[3]]
    assert hints[LAB2[4]] == no_messages
    assert hints[LAB2[5]] == no_messages
    assert hints[LAB2[6]].startswith(
        "POST /v1/chat/completions for mock-small through the gateway answered 502"
    )
    assert "127.0.0.1" not in str(report)  # hints never show the upstream's varying port
    with pytest.raises(CheckFailed):
        run_check("lab2", helix, {}, strict=True)


def messages_only(request: ChatRequest) -> dict:
    return {"model": request.model, "messages": [m.to_openai() for m in request.messages]}


@pytest.mark.parametrize(
    ("gap", "failed", "hinted", "hint"),
    [
        ({"to_upstream": messages_only}, [4, 5], 5, "to_upstream() must send request.tools"),
        ({"to_upstream": messages_only}, [4, 5], 4, "the request set temperature, max_tokens"),
        ({"from_upstream": starter_from_upstream}, [1, 5], 1, "from_upstream() must take"),
        ({"parse_sse_line": starter_parse_sse_line}, [2, 3], 2, "yielded 0 chunk(s)"),
    ],
    ids=["tools", "settings", "response", "stream"],
)
def test_lab2_each_gap_has_its_own_hint(helix, upstream, gap, failed, hinted, hint):
    loaded(helix, provider_class(upstream.url, **gap))
    hints = failing(run_check("lab2", helix, {}))
    assert list(hints) == [LAB2[i] for i in failed]
    assert hint in hints[LAB2[hinted]]


def test_lab2_tool_calls_dropped_by_from_upstream(helix, upstream):
    def no_calls(data: dict) -> ChatResponse:
        reply = solution_from_upstream(data)
        return reply.model_copy(update={"tool_calls": []})

    loaded(helix, provider_class(upstream.url, from_upstream=no_calls))
    hints = failing(run_check("lab2", helix, {}))
    assert list(hints) == [LAB2[5]]
    assert "ToolCall(id=..., name=..., arguments=...)" in hints[LAB2[5]]


def test_lab2_models_that_do_not_route(helix, upstream):
    loaded(helix, provider_class(upstream.url, models=()))
    hints = failing(run_check("lab2", helix, {}))
    assert list(hints) == [LAB2[6]]
    assert hints[LAB2[6]].startswith("capabilities().models is ()")


def test_lab2_a_health_check_that_never_asks(helix, upstream):
    loaded(helix, provider_class(upstream.url, health=False))
    hints = failing(run_check("lab2", helix, {}))
    assert list(hints) == [LAB2[7]]
    assert "with its upstream stopped, lab-provider still reports healthy" in hints[LAB2[7]]


def test_lab2_without_the_plugin(helix):
    hints = failing(run_check("lab2", helix, {}))
    assert set(hints) == set(LAB2)
    assert hints[LAB2[0]].startswith("helix has no plugin named 'lab-provider'")


# -- lab 3: the rate limiter, written as the lab's solution and as its starter -------------


class LabLimiterConfig(hx.PluginConfig):
    requests_per_minute: float = Field(default=60, gt=0)
    burst_size: int = Field(default=5, ge=1)


class SolutionBucket:
    def __init__(self, capacity: int, rate: float, now: float):
        self.capacity, self.rate = capacity, rate
        self.tokens = float(capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> float:
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class StarterBucket(SolutionBucket):
    def refill(self, now: float) -> None:
        self.updated = now

    def take(self, now: float) -> float:
        self.refill(now)
        return 0.0


class NoRefillBucket(SolutionBucket):
    def refill(self, now: float) -> None:
        self.updated = now


def client_of(scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            return "key:" + hashlib.sha256(value).hexdigest()[:12]
    return "ip:" + (scope.get("client") or ("unknown",))[0]


def limiter_class(
    bucket: type = SolutionBucket,
    answer_429: bool = True,
    hand_over: bool = True,
    new_limits: bool = True,
) -> type[hx.MiddlewarePlugin]:
    class Middleware:
        def __init__(self, app, plugin):
            self.app, self.plugin = app, plugin

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
                await self.app(scope, receive, send)
                return
            plugin = self.plugin
            wait = plugin.bucket_for(client_of(scope)).take(plugin.clock())
            if wait > 0 and answer_429:
                seconds = math.ceil(wait)
                response = error_response(
                    429, f"Retry after {seconds}s.", headers={"Retry-After": str(seconds)}
                )
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)

    class LabRateLimiter(hx.MiddlewarePlugin):
        name = "lab-rate-limiter"
        version = "1.0.0"
        config_model = LabLimiterConfig

        def init(self, ctx, config):
            self.config = config
            self.clock = time.monotonic
            self.buckets = {}

        def bucket_for(self, client: str):
            if client not in self.buckets:
                rate = self.config.requests_per_minute / 60
                self.buckets[client] = bucket(self.config.burst_size, rate, self.clock())
            return self.buckets[client]

        def export_state(self):
            return self.buckets if hand_over else None

        def import_state(self, state):
            if state is not None:
                self.buckets = state
                for kept in self.buckets.values() if new_limits else ():
                    kept.capacity = self.config.burst_size
                    kept.rate = self.config.requests_per_minute / 60
                    kept.tokens = min(kept.tokens, kept.capacity)

        def health_check(self, ctx):
            if self.buckets is None:
                return "not initialized"

        def get_middleware(self):
            return lambda app: Middleware(app, self)

    return LabRateLimiter


LAB3 = [
    "lab-rate-limiter is registered and active in helix",
    "a client's first 3 requests (burst_size 3) pass with 200",
    "the next one gets 429 in OpenAI's error shape, with a Retry-After header",
    "other clients are not affected by one client's empty bucket",
    "tokens come back over time: one every 60s at 1 request(s) a minute",
    "a hot reload of the limiter keeps every client's bucket (export_state / import_state)",
    "re-running the limiter's cell keeps every client's bucket (no module-level buckets)",
    "a configure applies the new burst_size and rate to the buckets that exist",
    "lab-rate-limiter is healthy, and the gateway's GET /health answers 200",
]


def test_lab3_solution_passes_every_check(helix):
    loaded(helix, limiter_class())
    report = run_check("lab3", helix, {"helix": helix})
    assert [r.description for r in report.results] == LAB3
    assert report.passed, str(report)
    assert run_check("lab3", helix, {}, strict=True).passed


def test_lab3_checks_leave_the_notebook_plugin_alone(helix):
    loaded(helix, limiter_class())
    before = helix.get("lab-rate-limiter")
    run_check("lab3", helix, {})
    assert helix.get("lab-rate-limiter") is before
    assert helix.reload_count("lab-rate-limiter") == 0
    assert before.buckets == {}


def test_lab3_hints_are_the_same_when_the_notebook_logs_at_info(helix, caplog):
    """A learner's `logging.basicConfig(level=logging.INFO)`: the checks' gateway then logs
    INFO lines (uvicorn's "Started server process"), which are not problems: the hints
    stay exactly as without them (one had a trailing space)."""
    caplog.set_level(logging.INFO)
    loaded(helix, limiter_class(StarterBucket, answer_429=False, hand_over=False))
    hints = failing(run_check("lab3", helix, {}))
    assert hints[LAB3[2]].endswith(
        "return the seconds until there will be; the middleware then answers 429 (steps 2 and 3)."
    )


def test_lab3_starter_shows_the_gaps_with_hints(helix):
    loaded(helix, limiter_class(StarterBucket, answer_429=False, hand_over=False))
    report = run_check("lab3", helix, {})
    got = results(report)
    for passing in (LAB3[0], LAB3[1], LAB3[8]):
        assert got[passing] == (True, ""), passing
    hints = failing(report)
    assert set(hints) == {LAB3[2], LAB3[3], LAB3[4], LAB3[5], LAB3[6], LAB3[7]}
    over = (
        "with burst_size 3 and one token a minute, request 4 in a row got 200. "
        "TokenBucket.take() must spend a token when there is one and, when there is none, "
        "return the seconds until there will be; the middleware then answers 429 "
        "(steps 2 and 3)."
    )
    assert hints[LAB3[2]] == over
    assert hints[LAB3[3]] == over  # cannot tell yet: nobody is ever refused
    assert hints[LAB3[4]] == over
    assert hints[LAB3[5]] == over
    assert hints[LAB3[6]] == over
    assert hints[LAB3[7]] == over
    with pytest.raises(CheckFailed):
        run_check("lab3", helix, {}, strict=True)


def test_lab3_a_bucket_that_says_no_but_a_middleware_that_lets_through(helix):
    loaded(helix, limiter_class(answer_429=False))
    hints = failing(run_check("lab3", helix, {}))
    assert set(hints) == {LAB3[2], LAB3[3], LAB3[4], LAB3[5], LAB3[6], LAB3[7]}
    assert "request 4 in a row got 200" in hints[LAB3[2]]


def test_lab3_no_refill(helix):
    loaded(helix, limiter_class(NoRefillBucket))
    hints = failing(run_check("lab3", helix, {}))
    assert list(hints) == [LAB3[4], LAB3[7]]
    assert "refill() must add the tokens earned since self.updated" in hints[LAB3[4]]


def test_lab3_no_state_handover(helix):
    loaded(helix, limiter_class(hand_over=False))
    hints = failing(run_check("lab3", helix, {}))
    assert list(hints) == [LAB3[5], LAB3[6], LAB3[7]]
    assert "export_state() must return the buckets" in hints[LAB3[5]]
    assert "export_state() must return the buckets" in hints[LAB3[6]]
    assert "a configure must not refill anyone's bucket" in hints[LAB3[7]]


def test_lab3_a_configure_that_keeps_the_old_limits(helix):
    loaded(helix, limiter_class(new_limits=False))
    hints = failing(run_check("lab3", helix, {}))
    assert list(hints) == [LAB3[7]]
    assert "buckets that already exist must take the new limits too" in hints[LAB3[7]]


def test_lab3_a_bucket_shared_by_everyone(helix):
    def one_for_all(self, client: str) -> SolutionBucket:
        if "everyone" not in self.buckets:
            self.buckets["everyone"] = SolutionBucket(3, 1 / 60, self.clock())
        return self.buckets["everyone"]

    cls = limiter_class()
    cls.bucket_for = one_for_all
    loaded(helix, cls)
    hints = failing(run_check("lab3", helix, {}))
    assert LAB3[3] in hints
    assert "each client has its own bucket" in hints[LAB3[3]]
