"""helixlab.mockllm against the real server over loopback HTTP, with httpx and openai."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import openai
import pytest

from helixlab.llm import ChatResponse, Tool, ToolCall, accumulate, iter_sse_chunks
from helixlab.mockllm import CREATED, MockLLM, start

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "units"],
        },
    },
}


@pytest.fixture(scope="module")
def server():
    with start() as running:
        yield running


@pytest.fixture
def mock(server):
    server.reset()
    return server


@pytest.fixture
def client(mock):
    with openai.OpenAI(base_url=mock.url, api_key="unused", max_retries=0) as c:
        yield c


def user(text):
    return [{"role": "user", "content": text}]


def post(server, body, **kwargs):
    return httpx.post(f"{server.url}/chat/completions", json=body, **kwargs)


# -- plain chat --------------------------------------------------------------------


def test_chat_echoes_the_last_user_message_with_stable_ids_and_word_counts(mock):
    response = post(
        mock,
        {
            "model": "mock-small",
            "messages": [{"role": "system", "content": "Be kind."}, *user("hello there")],
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "id": "chatcmpl-mock-0001",
        "object": "chat.completion",
        "created": CREATED,
        "model": "mock-small",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Echo: hello there",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "system_fingerprint": "fp_helixlab_mock",
        "service_tier": "default",
        "usage": {
            "prompt_tokens": 4,
            "completion_tokens": 3,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }
    assert post(mock, {"model": "mock-small", "messages": user("x")}).json()["id"] == (
        "chatcmpl-mock-0002"
    )


def test_openai_client_chats_and_server_records_request_bodies(mock, client):
    completion = client.chat.completions.create(
        model="mock-large", messages=user("ping"), temperature=0.1, seed=3
    )
    assert completion.choices[0].message.content == "Echo: ping"
    assert completion.model == "mock-large"
    assert completion.usage.total_tokens == 3
    [body] = mock.requests
    assert body["seed"] == 3
    assert body["messages"] == user("ping")


def test_max_tokens_truncates_the_reply_and_says_so(client):
    completion = client.chat.completions.create(
        model="mock-small", messages=user("one two three four"), max_tokens=3
    )
    assert completion.choices[0].message.content == "Echo: one two"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


def test_scripted_replies_are_used_in_order_then_echo_resumes(mock, client):
    mock.script(["first reply", "second reply"])
    replies = [
        client.chat.completions.create(model="mock-small", messages=user("q")).choices[0]
        for _ in range(3)
    ]
    assert [choice.message.content for choice in replies] == [
        "first reply",
        "second reply",
        "Echo: q",
    ]


def test_latency_delays_each_reply(mock, client):
    mock.set_latency(0.2)
    began = time.perf_counter()
    client.chat.completions.create(model="mock-small", messages=user("slow"))
    assert time.perf_counter() - began >= 0.2


# -- streaming ---------------------------------------------------------------------


def test_stream_arrives_word_by_word_and_ends_with_done(mock):
    body = {"model": "mock-small", "messages": user("a b c d"), "stream": True}
    with httpx.stream("POST", f"{mock.url}/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    deltas = [p["choices"][0]["delta"].get("content") for p in payloads]
    assert deltas == ["", "Echo: ", "a ", "b ", "c ", "d", None]
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert {p["id"] for p in payloads} == {"chatcmpl-mock-0001"}
    assert all("usage" not in p for p in payloads)


def test_stream_parsed_incrementally_adds_up_to_the_non_streamed_reply(mock):
    body = {"model": "mock-small", "messages": user("same either way"), "stream": True}
    with httpx.stream("POST", f"{mock.url}/chat/completions", json=body) as response:
        streamed = accumulate(iter_sse_chunks(response.iter_lines()))
    plain = ChatResponse.from_openai(post(mock, {**body, "stream": False}).json())
    assert streamed.content == plain.content == "Echo: same either way"
    assert streamed.finish_reason == plain.finish_reason == "stop"


def test_openai_stream_with_include_usage_ends_with_a_usage_chunk(client):
    stream = client.chat.completions.create(
        model="mock-small",
        messages=user("count these words"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: count these words"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 3
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_dropped_stream_fails_the_client_and_the_server_keeps_serving(mock, client):
    mock.drop_next()
    stream = client.chat.completions.create(
        model="mock-small", messages=user("one two three four five six"), stream=True
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received  # it broke mid-stream, not before the first byte
    completion = client.chat.completions.create(model="mock-small", messages=user("still there?"))
    assert completion.choices[0].message.content == "Echo: still there?"


def test_dropped_stream_is_seen_by_the_sse_decoder_as_an_error(mock):
    mock.drop_next()
    body = {"model": "mock-small", "messages": user("a b c d e f g h"), "stream": True}
    with (
        httpx.stream("POST", f"{mock.url}/chat/completions", json=body) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        list(iter_sse_chunks(response.iter_lines()))


# -- tools -------------------------------------------------------------------------


def test_tool_call_round_trip_with_the_openai_client(client):
    messages = user("What is the weather? Use get_weather for Paris.")
    first = client.chat.completions.create(model="mock-small", messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.id == "call_0001"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert arguments == {"city": "Paris", "units": "celsius"}

    tool = Tool.from_function(lambda city, units: f"18 degrees {units} in {city}", name="w")
    result = asyncio.run(tool.invoke(call.function.arguments))
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]
    second = client.chat.completions.create(model="mock-small", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == (
        "The get_weather tool returned: 18 degrees celsius in Paris"
    )
    assert second.choices[0].finish_reason == "stop"


def test_a_natural_question_about_a_tools_topic_calls_it(client):
    completion = client.chat.completions.create(
        model="mock-small", messages=user("What is the weather in Paris?"), tools=[WEATHER]
    )
    [call] = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] == "Paris"
    # a prompt about something else is still answered, deterministically, with an echo
    other = client.chat.completions.create(
        model="mock-small", messages=user("Tell me a joke"), tools=[WEATHER]
    )
    assert other.choices[0].message.content == "Echo: Tell me a joke"


def test_topic_words_of_tool_names():
    from helixlab.mockllm._replies import topic_words

    assert topic_words("get_weather") == {"weather"}
    assert topic_words("convertCurrency") == {"convert", "currency"}
    assert topic_words("lookup-stock-prices") == {"stock", "price"}


def test_explicit_arguments_in_the_message_are_used_and_typed(client):
    completion = client.chat.completions.create(
        model="mock-small",
        messages=user('get_weather city="New York" days=3 units=fahrenheit'),
        tools=[WEATHER],
    )
    call = completion.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {
        "city": "New York",
        "days": 3,
        "units": "fahrenheit",
    }


def test_tool_choice_forces_or_forbids_a_call(client):
    forced = client.chat.completions.create(
        model="mock-small",
        messages=user("tell me about Oslo"),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert forced.choices[0].message.tool_calls[0].function.name == "get_weather"
    forbidden = client.chat.completions.create(
        model="mock-small",
        messages=user("get_weather for Oslo"),
        tools=[WEATHER],
        tool_choice="none",
    )
    assert forbidden.choices[0].message.tool_calls is None
    assert forbidden.choices[0].message.content == "Echo: get_weather for Oslo"


def test_streamed_tool_call_accumulates_to_the_same_call(client):
    stream = client.chat.completions.create(
        model="mock-small",
        messages=user("get_weather city=Lisbon units=celsius"),
        tools=[WEATHER],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    pieces = 0
    for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
            pieces += 1
    assert pieces > 2  # the arguments really came in several pieces
    assert calls == {
        0: {
            "id": "call_0001",
            "name": "get_weather",
            "arguments": json.dumps({"city": "Lisbon", "units": "celsius"}),
        }
    }


def test_scripted_tool_call(mock, client):
    mock.script([ToolCall(id="call_fixed", name="get_weather", arguments={"city": "Rome"})])
    completion = client.chat.completions.create(
        model="mock-small", messages=user("anything"), tools=[WEATHER]
    )
    call = completion.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_fixed", "get_weather")


# -- faults and errors -------------------------------------------------------------


def test_injected_500_raises_internal_server_error_then_recovers(mock, client):
    mock.fail_next(status=500, count=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="mock-small", messages=user("x"))
        assert info.value.body["type"] == "server_error"
    assert client.chat.completions.create(model="mock-small", messages=user("x")).choices


def test_injected_429_carries_retry_after(mock, client):
    mock.fail_next(status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="mock-small", messages=user("x"))
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"


def test_openai_client_retries_past_a_single_failure(mock):
    mock.fail_next(status=503, retry_after=0.01)
    with openai.OpenAI(base_url=mock.url, api_key="unused", max_retries=1) as retrying:
        completion = retrying.chat.completions.create(model="mock-small", messages=user("x"))
    assert completion.choices[0].message.content == "Echo: x"
    assert len(mock.requests) == 2


def test_unknown_model_is_a_404_naming_it(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=user("x"))
    assert info.value.code == "model_not_found"
    assert "'gpt-9'" in info.value.message
    assert "mock-small" in info.value.message


def test_malformed_request_is_a_400_naming_the_field(mock):
    response = post(mock, {"model": "mock-small", "messages": [{"role": "robot", "content": "x"}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "request.messages[0].role" in error["message"]
    assert post(mock, None, content=b"{not json").status_code == 400


def test_models_and_health(mock, client):
    assert [model.id for model in client.models.list()] == ["mock-small", "mock-large"]
    health = httpx.get(mock.url.removesuffix("/v1") + "/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


def test_api_key_is_required_when_set():
    with start(api_key="sk-test", models=["m"]) as keyed:
        with openai.OpenAI(base_url=keyed.url, api_key="sk-wrong", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError) as info:
                wrong.chat.completions.create(model="m", messages=user("x"))
            assert info.value.code == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                wrong.models.list()
        missing = post(keyed, {"model": "m", "messages": user("x")})
        assert missing.status_code == 401
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
        with openai.OpenAI(base_url=keyed.url, api_key="sk-test", max_retries=0) as right:
            reply = right.chat.completions.create(model="m", messages=user("x"))
            assert reply.choices[0].message.content == "Echo: x"
        assert httpx.get(keyed.url.removesuffix("/v1") + "/health").status_code == 200


# -- lifecycle ---------------------------------------------------------------------


def test_stop_frees_the_port_and_leaves_no_thread_behind():
    before = set(threading.enumerate())
    server = start(script=["hi"])
    assert server.running
    assert post(server, {"model": "mock-small", "messages": user("x")}).status_code == 200
    server.stop()
    server.stop()  # a second stop is harmless
    assert not server.running
    assert set(threading.enumerate()) <= before
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url.removesuffix("/v1") + "/health")


def test_start_binds_loopback_and_refuses_a_busy_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            start(port=port)
    with start() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.url.endswith("/v1")


def test_mockllm_is_a_plain_asgi_app():
    async def main():
        mock = MockLLM(models=["m"], script=["in-process"])
        transport = httpx.ASGITransport(app=mock)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock") as c:
            response = await c.post(
                "/v1/chat/completions", json={"model": "m", "messages": user("x")}
            )
        return response.json()["choices"][0]["message"]["content"]

    assert asyncio.run(main()) == "in-process"


def test_exported_names_are_sorted_and_exist():
    import helixlab.mockllm as mockllm

    assert mockllm.__all__ == sorted(mockllm.__all__)
    for name in mockllm.__all__:
        assert hasattr(mockllm, name), name
