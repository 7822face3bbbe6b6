"""The gateway over real loopback HTTP: the official openai client, raw SSE, errors, routing,
tools, health and plugin status. Reload behaviour: test_gateway_reload.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

import helixlab as hx
import helixlab.gateway as gw
from helixlab.errors import ConfigError

from _gateway_support import (
    DenyPlugin,
    ToolsPlugin,
    UpstreamError,
    header_plugin,
    provider_plugin,
)
from conftest import FAST


@pytest.fixture
def options() -> dict[str, Any]:
    """Shared, mutable behaviour of the fake provider (e.g. ``options["fail"] = ...``)."""
    return {}


@pytest.fixture
def kernel(options: dict[str, Any], make_kernel) -> hx.Kernel:
    k = make_kernel()
    k.register(provider_plugin(options=options))
    k.register(DenyPlugin)
    k.register(header_plugin("outer", priority=5))
    k.register(header_plugin("inner"))
    k.register(ToolsPlugin)
    assert k.load_all().ok
    return k


@pytest.fixture
def server(kernel: hx.Kernel) -> gw.GatewayServer:
    return kernel.serve(port=0)


@pytest.fixture
def http(server: gw.GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def client(server: gw.GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fake-small", "messages": [{"role": "user", "content": text}], **extra}


def sse_events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads, read line by line as they arrive."""
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


# -- the public surface -----------------------------------------------------------------


def test_exported_members() -> None:
    assert gw.__all__ == sorted(gw.__all__)
    assert {name for name in dir(gw) if not name.startswith("_")} >= set(gw.__all__)


def test_server_handle_urls_and_loopback(server: gw.GatewayServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.openai_base_url == server.url + "/v1"
    assert server.port > 0 and server.running


def test_kernel_close_stops_the_server_first(options: dict[str, Any], make_kernel) -> None:
    kernel = make_kernel()
    kernel.register(provider_plugin(options=options))
    kernel.load_all()
    server = kernel.serve()
    assert httpx.get(server.url + "/health").status_code == 200
    kernel.close()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health")
    server.stop()  # after close: a no-op


def test_stop_is_idempotent_and_a_context_manager(kernel: hx.Kernel) -> None:
    with kernel.serve() as server:
        assert httpx.get(server.url + "/v1/models").status_code == 200
    assert not server.running
    server.stop()


# -- chat through the official openai client ----------------------------------------------


def test_openai_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="fake-small", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert reply.choices[0].message.content.endswith("Echo: hello gateway")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_openai_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces).endswith("Echo: one two three")
    assert len(pieces) > 3  # word by word, not one blob
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0


def test_openai_tool_calls_go_back_to_the_client(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    reply = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "get_weather city=Paris"}],
        tools=tools,
    )
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    stream = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "get_weather city=Oslo"}],
        tools=tools,
        stream=True,
    )
    names, arguments = [], ""
    for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.function and delta.function.name:
                names.append(delta.function.name)
            arguments += (delta.function.arguments or "") if delta.function else ""
    assert names == ["get_weather"] and json.loads(arguments) == {"city": "Oslo"}


def test_openai_models_list(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["fake-small", "fake-large"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (429, openai.RateLimitError),
    ],
)
def test_openai_error_classes_from_middleware(
    server: gw.GatewayServer, status: int, error: type[Exception]
) -> None:
    client = openai.OpenAI(
        base_url=server.openai_base_url,
        api_key="unused",
        max_retries=0,
        default_headers={"x-test-deny": str(status)},
    )
    with pytest.raises(error) as caught:
        client.chat.completions.create(
            model="fake-small", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == status
    assert caught.value.body["message"] == f"denied with {status}"


def test_openai_error_classes_from_the_gateway(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fake-small", messages=[])
    assert bad.value.param == "messages"


# -- raw HTTP: SSE framing, bad input ------------------------------------------------------


def test_sse_is_read_incrementally_and_ends_with_done(http: httpx.Client) -> None:
    body = chat("a b c", stream=True, stream_options={"include_usage": True})
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.endswith("Echo: a b c")


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "JSON object"),
        (json.dumps({"model": "fake-small", "messages": "hi"}).encode(), "messages", "array"),
        (json.dumps(chat("x", temperature="hot")).encode(), "temperature", "temperature"),
        (json.dumps(chat("x", max_tokens="many")).encode(), "max_tokens", "max_tokens"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model", "model"),
        (json.dumps(chat("x", helixlab={"execute_tool": True})).encode(), None, "helixlab"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    http: httpx.Client, body: bytes, param: str | None, needle: str
) -> None:
    response = http.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]
    if param is not None:
        assert error["param"] == param


def test_unknown_route_and_method_are_openai_shaped(http: httpx.Client) -> None:
    response = http.get("/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_route"
    response = http.get("/v1/chat/completions")
    assert response.status_code == 405 and "error" in response.json()


def test_huge_body_with_content_length_is_413(server: gw.GatewayServer, kernel: hx.Kernel) -> None:
    with kernel.serve(max_body_bytes=1000) as small:
        response = httpx.post(small.url + "/v1/chat/completions", content=b"x" * 5000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_huge_chunked_body_is_cut_off_while_read(kernel: hx.Kernel) -> None:
    sent = []

    def body() -> Iterator[bytes]:
        for _ in range(64):  # 64 KiB, no Content-Length: only counting can catch it
            sent.append(1)
            yield b" " * 1024

    with kernel.serve(max_body_bytes=4096) as small:
        response = httpx.post(small.url + "/v1/chat/completions", content=body())
    assert response.status_code == 413
    assert "4096 bytes" in response.json()["error"]["message"]


def test_default_body_limit_is_one_mib(http: httpx.Client) -> None:
    text = "x" * (1 << 20)
    response = http.post("/v1/chat/completions", json=chat(text))
    assert response.status_code == 413


# -- routing and providers -------------------------------------------------------------


def test_routing_by_model_then_open_provider_by_priority() -> None:
    with hx.Kernel(timeouts=FAST) as kernel:
        kernel.register(provider_plugin("listed", ("alpha",)))
        kernel.register(provider_plugin("open-low", (), priority=1))
        kernel.register(provider_plugin("open-high", (), priority=9))
        kernel.load_all()
        with kernel.serve() as server:
            post = lambda model: httpx.post(  # noqa: E731
                server.url + "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "x"}]},
            )
            assert post("alpha").headers["x-helixlab-provider"] == "listed"
            assert post("anything").headers["x-helixlab-provider"] == "open-high"
            assert [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]] == [
                "alpha"
            ]


def test_no_provider_is_503_and_health_says_why() -> None:
    with hx.Kernel(timeouts=FAST) as kernel, kernel.serve(health_detail="public") as server:
        response = httpx.post(server.url + "/v1/chat/completions", json=chat("x"))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "no_provider"
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503
        assert health.json()["detail"] == "no provider plugin is running"


def test_upstream_status_and_body_pass_through(http: httpx.Client, options: dict[str, Any]) -> None:
    options["fail"] = lambda: UpstreamError(429, "slow down", retry_after=3)
    response = http.post("/v1/chat/completions", json=chat("x"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["message"] == "slow down"
    # ...also for a stream that fails before its first chunk: a real status, not a 200
    response = http.post("/v1/chat/completions", json=chat("x", stream=True))
    assert response.status_code == 429


def test_other_provider_errors_are_502_without_secrets(
    http: httpx.Client, options: dict[str, Any]
) -> None:
    options["fail"] = lambda: ConnectionError("refused; header Bearer sk-secret123456")
    response = http.post("/v1/chat/completions", json=chat("x"))
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "fake-provider" in message and "ConnectionError" in message
    assert "sk-secret" not in message and "Traceback" not in response.text


def test_unexpected_error_is_500_without_traceback(kernel: hx.Kernel) -> None:
    class Crash:
        def __init__(self, app: Any):
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            raise RuntimeError("internal detail that must not leak")

    plugin = type(
        "CrashPlugin",
        (hx.MiddlewarePlugin,),
        {"name": "crash", "get_middleware": lambda self: Crash},
    )
    kernel.register(plugin)
    kernel.load("crash")
    with kernel.serve() as server:
        response = httpx.post(server.url + "/v1/chat/completions", json=chat("x"))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "internal detail" not in response.text and "Traceback" not in response.text


# -- tools run by the gateway ------------------------------------------------------------


def test_server_side_tools_with_extra_body(client: openai.OpenAI, kernel: hx.Kernel) -> None:
    reply = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "please add a=2 b=40"}],
        extra_body={"helixlab": {"execute_tools": True}},
    )
    assert reply.choices[0].message.content.endswith("The add tool returned: 42")
    provider = kernel.get("fake-provider").get_provider()
    offered = [tool.name for tool in provider.requests[0].tools]
    assert offered == ["add", "explode"]  # the request offered none: all of them are
    assert "helixlab" not in provider.requests[0].extra  # the gateway's option stays here


def test_server_side_tool_errors_go_back_to_the_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "explode reason=boom"}],
        extra_body={"helixlab": {"execute_tools": True}},
    )
    assert "ValueError: exploded: boom" in reply.choices[0].message.content


def test_server_side_tools_while_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "add a=1 b=2"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"helixlab": {"execute_tools": True}},
    )
    text, calls, usage = "", [], None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            calls += chunk.choices[0].delta.tool_calls or []
        usage = chunk.usage or usage
    assert text.endswith("The add tool returned: 3") and calls == []
    assert usage.prompt_tokens > 4  # summed over both rounds


def test_tool_rounds_are_bounded(kernel: hx.Kernel) -> None:
    provider = kernel.get("fake-provider").get_provider()
    original, seen = provider._reply, []

    def always_calls(request: Any) -> Any:
        # A model that asks for the tool again on every turn: only the bound stops it.
        seen.append(request)
        return original(request.model_copy(update={"messages": request.messages[:1]}))

    provider._reply = always_calls
    with kernel.serve(execute_tools=True, max_tool_rounds=2) as server:
        response = httpx.post(server.url + "/v1/chat/completions", json=chat("add a=1 b=1"))
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "tool_calls"  # handed back after 2 rounds
    assert provider.calls == 3
    assert [m.role for m in seen[-1].messages].count("tool") == 2


def test_gateway_config_turns_tool_execution_on(kernel: hx.Kernel) -> None:
    with kernel.serve(execute_tools=True) as server:
        response = httpx.post(server.url + "/v1/chat/completions", json=chat("add a=5 b=5"))
        assert response.json()["choices"][0]["message"]["content"].endswith("returned: 10")
        off = chat("add a=5 b=5", helixlab={"execute_tools": False})
        response = httpx.post(server.url + "/v1/chat/completions", json=off)
        assert response.json()["choices"][0]["finish_reason"] == "stop"  # no tools offered


# -- middleware chain ----------------------------------------------------------------------


def test_first_in_load_order_is_outermost(http: httpx.Client, kernel: hx.Kernel) -> None:
    order = kernel.graph.load_order()
    assert order.index("outer") < order.index("inner")
    response = http.get("/v1/models")
    assert response.headers["x-chain"] == "outer,inner"


def test_dependencies_order_the_chain_before_priority() -> None:
    with hx.Kernel(timeouts=FAST) as kernel:
        kernel.register(header_plugin("logger"))
        kernel.register(header_plugin("auth", priority=50, deps=("logger",)))
        kernel.register(header_plugin("limiter", priority=10))
        kernel.load_all()
        with kernel.serve() as server:
            chain = httpx.get(server.url + "/v1/models").headers["x-chain"]
    assert chain == "limiter,logger,auth"


def test_a_reload_that_changes_a_priority_reorders_the_chain_in_that_reload() -> None:
    with hx.Kernel(timeouts=FAST) as kernel:
        kernel.register(header_plugin("first", priority=10))
        kernel.register(header_plugin("second"))
        kernel.load_all()
        with kernel.serve() as server:
            assert httpx.get(server.url + "/v1/models").headers["x-chain"] == "first,second"
            kernel.apply_config("plugins:\n  second:\n    priority: 20\n")
            assert httpx.get(server.url + "/v1/models").headers["x-chain"] == "second,first"


def test_claims_travel_in_scope_state(kernel: hx.Kernel) -> None:
    class EchoClaims:  # later in the chain than "deny", which sets the claims
        def __init__(self, app: Any):
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            claims = scope["state"].get("helixlab.claims")

            async def tag(message: dict) -> None:
                if message["type"] == "http.response.start":
                    subject = str(claims["sub"]).encode()
                    message = {**message, "headers": [*message["headers"], (b"x-sub", subject)]}
                await send(message)

            await self.app(scope, receive, tag)

    plugin = type(
        "EchoClaimsPlugin",
        (hx.MiddlewarePlugin,),
        {"name": "echo-claims", "get_middleware": lambda self: EchoClaims},
    )
    kernel.register(plugin)
    kernel.load("echo-claims")
    with kernel.serve() as server:
        assert httpx.get(server.url + "/v1/models").headers["x-sub"] == "tester"


def test_providers_see_the_callers_claims_but_upstream_never_does() -> None:
    from helixlab.llm import ChatRequest, ChatResponse, ProviderCapabilities

    seen: list[ChatRequest] = []

    class Recorder:
        async def complete(self, request: ChatRequest) -> ChatResponse:
            seen.append(request)
            return ChatResponse(content=str(request.context["claims"]["sub"]), model="m")

        async def complete_stream(self, request: ChatRequest) -> Any:
            yield  # not used here

        async def health_check(self) -> None:
            return None

        def capabilities(self) -> ProviderCapabilities:
            return ProviderCapabilities(models=["m"])

    class RecorderPlugin(hx.ProviderPlugin):
        name = "recorder"

        def get_provider(self) -> Recorder:
            return Recorder()

    with hx.Kernel(timeouts=FAST) as kernel:
        kernel.register(DenyPlugin)  # sets claims {"sub": "tester"} like custom-auth
        kernel.register(RecorderPlugin)
        kernel.load_all()
        with kernel.serve() as server:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            answer = httpx.post(server.url + "/v1/chat/completions", json=body).json()
    assert answer["choices"][0]["message"]["content"] == "tester"
    assert "context" not in seen[0].to_openai() and "tester" not in json.dumps(seen[0].to_openai())


# -- health and plugin status --------------------------------------------------------------


def test_health_is_200_with_per_plugin_detail(kernel: hx.Kernel) -> None:
    with kernel.serve(health_detail="public") as server:
        response = httpx.get(server.url + "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["providers"] == ["fake-provider"]
    assert body["plugins"]["outer"] == {"healthy": True, "state": "active", "detail": ""}


def test_health_is_503_when_a_plugin_is_unhealthy(kernel: hx.Kernel) -> None:
    sick = type(
        "Sick",
        (hx.Plugin,),
        {"name": "sick", "health_check": lambda self, ctx: "disk full"},
    )
    kernel.register(sick)
    kernel.load("sick")
    with kernel.serve(health_detail="public") as server:
        response = httpx.get(server.url + "/health")
    assert response.status_code == 503
    assert response.json()["plugins"]["sick"] == {
        "healthy": False,
        "state": "active",
        "detail": "disk full",
    }


def test_plugins_endpoint_redacts_secrets(kernel: hx.Kernel) -> None:
    kernel.register(type("Keyed", (hx.Plugin,), {"name": "keyed", "config_model": dict}))
    kernel.configure("keyed", {"api_key": "sk-very-secret", "url": "http://x"})
    kernel.load("keyed")
    with kernel.serve() as server:
        response = httpx.get(server.url + "/v1/plugins")
    assert "sk-very-secret" not in response.text
    rows = {row["name"]: row for row in response.json()["data"]}
    assert rows["keyed"]["config"] == {"api_key": "***", "url": "http://x"}
    assert rows["fake-provider"]["state"] == "active" and rows["deny"]["priority"] == 100


# -- configuration ---------------------------------------------------------------------


def test_gateway_section_is_validated_with_lines() -> None:
    from helixlab.kernel._config import parse_config

    doc = parse_config(
        "plugins: {}\ngateway:\n  max_body_bytes: 0\n  execute_tool: true\n", source="g.yaml"
    )
    with pytest.raises(ConfigError) as caught:
        gw.gateway_config(doc)
    text = str(caught.value)
    assert "g.yaml:3: gateway.max_body_bytes" in text
    assert "g.yaml:4: gateway.execute_tool: unknown key 'execute_tool'" in text
    assert "Did you mean 'execute_tools'?" in text
    good = parse_config("plugins: {}\ngateway:\n  max_tool_rounds: 2\n  graceful_timeout: 500ms\n")
    config = gw.gateway_config(good)
    assert (config.max_tool_rounds, config.graceful_timeout, config.host) == (2, 0.5, "127.0.0.1")


def test_serve_refuses_unknown_options(kernel: hx.Kernel) -> None:
    with pytest.raises(ConfigError, match="unknown key 'max_body'"):
        kernel.serve(max_body=10)


def test_aserve_from_another_loop(kernel: hx.Kernel) -> None:
    import asyncio

    async def main() -> int:
        server = await kernel.aserve(port=0)
        async with server, httpx.AsyncClient(base_url=server.url) as http:
            response = await http.get("/v1/models")
        assert not server.running
        return response.status_code

    assert asyncio.run(main()) == 200
