"""custom-provider against helixlab.mockllm (and a gated upstream) over loopback HTTP."""

from __future__ import annotations

import asyncio
import threading

import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

import helixlab as hx
from helixlab.kernel import Context
from helixlab.llm import ChatRequest, Message, Provider, ToolDefinition, aaccumulate, encode_sse
from helixlab.mockllm import start
from helixlab.plugins import UpstreamError
from helixlab.plugins._provider import CustomProvider, CustomProviderConfig

from test_plugins_asgi import serving

WEATHER = ToolDefinition(
    name="get_weather",
    description="Weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


@pytest.fixture(scope="module")
def server():
    with start(api_key="sk-upstream-key") as running:
        yield running


@pytest.fixture
def mock(server):
    server.reset()
    return server


def ask(text, **kwargs):
    return ChatRequest(model="mock-small", messages=[Message.user(text)], **kwargs)


def run(config, body):
    """Start a custom-provider with ``config`` on a fresh loop, run ``body(provider)``, stop."""

    async def main():
        plugin = CustomProvider()
        model = CustomProviderConfig.model_validate(config)
        ctx = Context("custom-provider", plugin.version, model, {})
        plugin.init(ctx, model)
        await plugin.start(ctx)
        provider = plugin.get_provider()
        sleeps = []

        async def record(seconds):
            sleeps.append(seconds)

        provider.sleep = record
        try:
            return await body(provider), sleeps
        finally:
            await plugin.stop(ctx)

    return asyncio.run(main())


def base(mock, **extra):
    return {"api_url": mock.url, "api_key": "sk-upstream-key", "retry_backoff": 0, **extra}


def test_complete_returns_the_upstream_reply_with_usage(mock):
    response, _ = run(base(mock), lambda p: p.complete(ask("Hello there")))
    assert response.content == "Echo: Hello there"
    assert response.model == "mock-small" and response.usage.total_tokens > 0
    assert mock.requests[0]["messages"] == [{"role": "user", "content": "Hello there"}]
    assert "stream" not in mock.requests[0]


def test_the_provider_satisfies_the_protocol_and_capabilities_are_from_config(mock):
    async def body(provider):
        return isinstance(provider, Provider), provider.capabilities()

    (is_provider, caps), _ = run(base(mock, models=["mock-small"], max_tokens=4096), body)
    assert is_provider
    assert caps.models == ("mock-small",) and caps.max_tokens == 4096
    assert caps.supports_streaming and caps.supports_tools


def test_streaming_yields_chunks_that_add_up_to_the_reply(mock):
    async def body(provider):
        chunks = [c async for c in provider.complete_stream(ask("one two three"))]
        return chunks

    chunks, _ = run(base(mock), body)
    assert len(chunks) > 3
    assert "".join(c.content or "" for c in chunks) == "Echo: one two three"
    assert chunks[-1].finish_reason == "stop"
    assert mock.requests[0]["stream"] is True


def test_streaming_is_parsed_incrementally_not_after_the_whole_body():
    gate = threading.Event()
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "first"}, "finish_reason": None}],
    }

    async def events():
        yield encode_sse(chunk)
        await asyncio.to_thread(gate.wait, 10)
        last = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield encode_sse(last) + encode_sse("[DONE]")

    async def chat(request):
        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    async def body(provider):
        stream = provider.complete_stream(ChatRequest(model="m", messages=[Message.user("x")]))
        first = await anext(stream)  # arrives while the upstream is still holding the rest
        gate.set()
        rest = [c async for c in stream]
        return first, rest

    with serving(app) as url:
        (first, rest), _ = run({"api_url": url + "/v1"}, body)
    assert first.content == "first"
    assert rest[-1].finish_reason == "stop"


def test_tool_calls_come_back_parsed_streaming_or_not(mock):
    request = ask("What is the weather in Paris? use get_weather", tools=[WEATHER])

    async def body(provider):
        whole = await provider.complete(request)
        streamed = await aaccumulate(provider.complete_stream(request))
        return whole, streamed

    (whole, streamed), _ = run(base(mock), body)
    for response in (whole, streamed):
        (call,) = response.tool_calls
        assert call.name == "get_weather" and "city" in call.parsed_arguments()
        assert response.finish_reason == "tool_calls"
    assert mock.requests[0]["tools"][0]["function"]["name"] == "get_weather"


def test_429_is_retried_waiting_as_long_as_retry_after_asks(mock):
    mock.fail_next(429, count=2, retry_after=2)
    response, sleeps = run(base(mock, retry_count=3), lambda p: p.complete(ask("hi")))
    assert response.content == "Echo: hi"
    assert len(mock.requests) == 3
    assert sleeps == [2, 2]


def test_500s_are_retried_with_exponential_backoff_then_surface_with_status(mock):
    mock.fail_next(500, count=10, message="upstream exploded")
    config = base(mock, retry_count=2, retry_backoff=0.1)

    async def body(provider):
        with pytest.raises(UpstreamError) as info:
            await provider.complete(ask("hi"))
        return info.value

    error, sleeps = run(config, body)
    assert len(mock.requests) == 3  # the first try and two retries
    assert error.status == 500 and error.http_status == 502 and error.attempts == 3
    assert error.error["message"] == "upstream exploded"
    assert error.to_openai()["error"]["type"] == "server_error"
    assert 0.1 <= sleeps[0] < 0.12 and 0.2 <= sleeps[1] < 0.24


def test_client_errors_are_not_retried_and_keep_their_status(mock):
    async def body(provider):
        with pytest.raises(UpstreamError) as info:
            await provider.complete(ChatRequest(model="gpt-nope", messages=[Message.user("x")]))
        return info.value

    error, sleeps = run(base(mock), body)
    assert len(mock.requests) == 1 and sleeps == []
    assert error.status == 404 and error.http_status == 404
    assert error.error["code"] == "model_not_found" and error.error["param"] == "model"


def test_a_retry_after_longer_than_max_retry_delay_is_not_waited_for(mock):
    mock.fail_next(503, count=1, retry_after=120)

    async def body(provider):
        with pytest.raises(UpstreamError) as info:
            await provider.complete(ask("hi"))
        return info.value

    error, sleeps = run(base(mock, max_retry_delay="10s"), body)
    assert sleeps == [] and len(mock.requests) == 1
    assert error.retry_after == 120 and error.http_status == 502


def test_the_upstream_refusing_the_gateways_key_is_a_502_not_the_callers_401(mock):
    async def body(provider):
        with pytest.raises(UpstreamError) as info:
            await provider.complete(ask("hi"))
        return info.value

    error, _ = run(base(mock, api_key="sk-wrong"), body)
    assert error.status == 401 and error.http_status == 502


def test_a_stream_is_retried_before_its_first_chunk(mock):
    mock.fail_next(503, count=1)

    async def body(provider):
        return await aaccumulate(provider.complete_stream(ask("again")))

    response, _ = run(base(mock), body)
    assert response.content == "Echo: again" and len(mock.requests) == 2


def test_a_stream_dropped_midway_raises_after_the_chunks_that_arrived(mock):
    mock.drop_next()

    async def body(provider):
        received = []
        with pytest.raises(UpstreamError) as info:
            async for chunk in provider.complete_stream(ask("a b c d e f g h")):
                received.append(chunk)
        return received, info.value

    (received, error), _ = run(base(mock), body)
    assert received and error.http_status == 502
    assert len(mock.requests) == 1  # never retried once chunks were delivered


def test_a_timeout_surfaces_as_504(mock):
    mock.set_latency(2)

    async def body(provider):
        with pytest.raises(UpstreamError) as info:
            await provider.complete(ask("slow"))
        return info.value

    error, _ = run(base(mock, timeout="200ms", retry_count=0), body)
    assert error.status is None and error.http_status == 504


def test_health_goes_through_the_upstream(mock):
    async def body(provider):
        await provider.health_check()
        return True

    assert run(base(mock), body)[0]
    stopped = start()
    stopped.stop()

    async def unhealthy(provider):
        with pytest.raises(UpstreamError) as info:
            await provider.health_check()
        return info.value

    error, _ = run({"api_url": stopped.url}, unhealthy)
    assert error.status is None and "could not be reached" in str(error)


# -- through a kernel -------------------------------------------------------------------


def test_with_no_api_url_it_uses_the_embedded_upstream(kernel):
    kernel.apply_config({"plugins": {"custom-provider": {}}})
    kernel.load_all()
    plugin = kernel.get("custom-provider")
    assert plugin.base_url.startswith("http://127.0.0.1:")
    provider = plugin.get_provider()
    assert provider.capabilities().models == ("mock-small", "mock-large")
    # called from this test's own loop, not the kernel's: still works
    response = asyncio.run(provider.complete(ask("embedded")))
    assert response.content == "Echo: embedded"
    assert kernel.health()["custom-provider"].healthy


def test_the_api_key_never_shows_in_config_info_events_or_errors(kernel, mock):
    yaml = (
        "plugins:\n  custom-provider:\n    config:\n"
        f"      api_url: {mock.url}\n      api_key: sk-upstream-key\n      timeout: 5s\n"
    )
    kernel.apply_config(yaml)
    kernel.load_all()
    plugin = kernel.get("custom-provider")
    shown = [
        repr(plugin.config),
        str(plugin.config),
        repr(kernel.info()),
        repr(kernel.events()),
        repr(plugin.get_provider()),
    ]
    assert not any("sk-upstream-key" in text for text in shown)
    assert kernel.info()[0].config["api_key"] == "***"
    assert asyncio.run(plugin.get_provider().complete(ask("k"))).content == "Echo: k"


def test_reload_and_configure_swap_the_client_and_capabilities(kernel, mock):
    kernel.apply_config({"plugins": {"custom-provider": {"config": base(mock)}}})
    kernel.load_all()
    old = kernel.get("custom-provider").get_provider()
    kernel.configure("custom-provider", {"models": ["mock-large"]})
    new = kernel.get("custom-provider").get_provider()
    assert new is not old and new.capabilities().models == ("mock-large",)
    with pytest.raises(RuntimeError, match="stopped"):
        asyncio.run(old.complete(ask("too late")))
    assert asyncio.run(new.complete(ask("fresh"))).content == "Echo: fresh"


def test_a_bad_api_url_is_a_config_error(kernel):
    with pytest.raises(hx.ConfigError, match="api_url"):
        kernel.apply_config({"plugins": {"custom-provider": {"config": {"api_url": "ftp://x"}}}})


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"api_key": "sk-pasted\n-key"}, "api_key must be printable ASCII"),
        ({"api_key": "sk-pasted-key\r\nX-Injected: 1"}, "api_key must be printable ASCII"),
        ({"api_key": "sk-pasted key"}, "api_key must be printable ASCII"),
        ({"api_key": "sk-pasted-kéy"}, "api_key must be printable ASCII"),
        ({"api_url": "https://h.test/v1\r\nX-Injected: 1"}, "api_url is not a valid URL"),
        ({"api_url": "https://h.test:99999/v1"}, "Port out of range"),
        ({"api_url": "https://h.test/v1?api-version=1"}, "without '\\?query'"),
        ({"health_path": "/models\r\nX-Injected: 1"}, "health_path is not a valid URL path"),
    ],
)
def test_a_key_or_url_that_cannot_go_on_the_wire_is_a_config_error(kernel, config, words):
    """Refused when the configuration is applied (the last good one keeps serving), not at
    the first request; the key itself is never quoted."""
    with pytest.raises(hx.ConfigError, match=words) as info:
        kernel.apply_config({"plugins": {"custom-provider": {"config": config}}})
    assert "pasted" not in str(info.value)


def test_a_key_read_from_a_file_with_its_newline_is_sent_trimmed():
    config = CustomProviderConfig(api_key=" sk-from-a-file\n")
    assert config.api_key is not None and config.api_key.get_secret_value() == "sk-from-a-file"
