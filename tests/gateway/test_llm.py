"""helixlab.llm: the shared models and their OpenAI wire conversions."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator

import pytest

import helixlab.llm as llm
from helixlab.llm import (
    ChatRequest,
    ChatResponse,
    Message,
    Provider,
    ProviderCapabilities,
    StreamAccumulator,
    StreamChunk,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    Usage,
    aaccumulate,
    accumulate,
    aiter_sse_chunks,
    confidence_from_logprobs,
    encode_sse,
    iter_sse_chunks,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def wire_request(**overrides):
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "Hi"}]}
    body.update(overrides)
    return body


def test_exported_names_are_sorted_and_exist():
    assert llm.__all__ == sorted(llm.__all__)
    for name in llm.__all__:
        assert hasattr(llm, name), name


# -- requests ----------------------------------------------------------------------


def test_request_round_trip_keeps_every_field_including_unknown_ones():
    body = wire_request(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?", "name": "ada"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        temperature=0.2,
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        top_p=0.9,
        seed=7,
        response_format={"type": "text"},
    )
    request = ChatRequest.from_openai(body)
    assert request.include_usage is True
    assert request.extra == {"top_p": 0.9, "seed": 7, "response_format": {"type": "text"}}
    assert request.forced_tool == "get_weather"
    assert request.messages[2].tool_calls[0].parsed_arguments() == {"city": "Paris"}
    assert request.to_openai() == body


def test_request_built_in_python_omits_unset_fields():
    request = ChatRequest(model="m", messages=[Message.user("Hi")], include_usage=True)
    # stream_options is only valid with stream=True, so it must not be sent alone.
    assert request.to_openai() == {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def test_request_accepts_tools_given_as_runnable_tools_and_sends_only_the_definition():
    tool = Tool(name="ping", description="Ping", fn=lambda: "pong")
    request = ChatRequest(model="m", messages=[Message.user("ping")], tools=[tool])
    assert request.to_openai()["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "ping",
                "description": "Ping",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "m"}, "request.messages is required"),
        (wire_request(messages=[]), "request.messages: List should have at least 1 item"),
        (wire_request(messages="hi"), "request.messages must be a JSON array, got string"),
        (
            wire_request(messages=[{"role": "robot", "content": "x"}]),
            "request.messages[0].role: Input should be",
        ),
        (
            wire_request(messages=[{"role": "tool", "content": "18C"}]),
            "request.messages[0]: a 'tool' message needs the tool_call_id",
        ),
        (
            wire_request(messages=[{"role": "user"}]),
            "request.messages[0]: a 'user' message needs content",
        ),
        (wire_request(temperature="hot"), "request.temperature: Input should be a valid number"),
        (wire_request(temperature=3), "request.temperature: Input should be less than or equal"),
        (wire_request(tool_choice="always"), "tool_choice 'always' is not one of none, auto"),
        (
            wire_request(tools=[{"type": "retrieval"}]),
            "request.tools[0].type must be 'function'",
        ),
        (
            wire_request(tools=[{"type": "function", "function": {"name": "get weather"}}]),
            "tool name 'get weather' must be 1-64 letters",
        ),
        (
            wire_request(
                messages=[
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": "get_weather"}]}
                ]
            ),
            "request.messages[0].tool_calls[0].function must be a JSON object, got string",
        ),
        ([1, 2], "request must be a JSON object, got array"),
    ],
)
def test_bad_request_bodies_are_rejected_naming_the_field(body, fragment):
    with pytest.raises(ValueError) as info:
        ChatRequest.from_openai(body)
    assert fragment in str(info.value)


def test_extra_may_not_shadow_a_named_field():
    with pytest.raises(ValueError, match="extra must not repeat named fields: model"):
        ChatRequest(model="m", messages=[Message.user("x")], extra={"model": "other"})


def test_message_text_joins_text_parts_and_skips_images():
    message = Message.from_openai(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe "},
                {"type": "image_url", "image_url": {"url": "data:,"}},
                {"type": "text", "text": "this."},
            ],
        }
    )
    assert message.text == "Describe this."


def test_message_from_openai_ignores_response_only_keys():
    # The openai client's model_dump() of a reply adds these; sending it back must work.
    message = Message.from_openai(
        {"role": "assistant", "content": "Hi", "refusal": None, "audio": None, "annotations": []}
    )
    assert message.to_openai() == {"role": "assistant", "content": "Hi"}


# -- responses ---------------------------------------------------------------------


def test_response_to_openai_is_a_complete_chat_completion():
    response = ChatResponse(
        content=None,
        model="mock-small",
        tool_calls=[ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})],
        usage=Usage(prompt_tokens=3, completion_tokens=4),
        id="chatcmpl-1",
        created=1700000000,
    )
    assert response.to_openai() == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "mock-small",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def test_response_round_trip():
    response = ChatResponse(
        content="Hello", model="m", usage=Usage(prompt_tokens=1, completion_tokens=1)
    )
    assert response.finish_reason == "stop"
    assert ChatResponse.from_openai(response.to_openai()) == response


def test_response_confidence_comes_from_logprobs_only():
    body = ChatResponse(content="Hi there", model="m").to_openai()
    assert ChatResponse.from_openai(body).confidence is None
    body["choices"][0]["logprobs"] = {
        "content": [{"token": "Hi", "logprob": math.log(0.9)}, {"token": " there", "logprob": 0.0}]
    }
    confidence = ChatResponse.from_openai(body).confidence
    assert confidence == pytest.approx(math.sqrt(0.9))


def test_confidence_from_logprobs_handles_missing_data():
    assert confidence_from_logprobs(None) is None
    assert confidence_from_logprobs({"content": []}) is None
    assert confidence_from_logprobs({"content": [{"logprob": 0.0}]}) == 1.0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "m", "choices": []}, "response.choices must not be empty"),
        ({"model": "m"}, "response.choices must be a JSON array, got null"),
        ({"object": "list", "choices": []}, "response.object must be 'chat.completion'"),
        (
            {"model": "m", "choices": [{"message": {"role": "assistant", "content": 5}}]},
            "response.choices[0].message.content",
        ),
        (
            {"choices": [{"message": {"role": "assistant", "content": "x"}}]},
            "response.model: Input should be a valid string",
        ),
    ],
)
def test_bad_responses_are_rejected_naming_the_field(body, fragment):
    with pytest.raises(ValueError) as info:
        ChatResponse.from_openai(body)
    assert fragment in str(info.value)


def test_usage_total_defaults_to_the_sum():
    assert Usage(prompt_tokens=2, completion_tokens=3).total_tokens == 5
    assert Usage.from_openai({"prompt_tokens": 2, "completion_tokens": 3}).total_tokens == 5
    assert (Usage(prompt_tokens=1) + Usage(completion_tokens=2)).total_tokens == 3


# -- tools -------------------------------------------------------------------------


def test_tool_call_arguments_parse_or_explain():
    assert ToolCall(id="c", name="f", arguments='{"a": 1}').parsed_arguments() == {"a": 1}
    with pytest.raises(ValueError, match=r"tool call 'c' \(f\) are not valid JSON"):
        ToolCall(id="c", name="f", arguments='{"a": ').parsed_arguments()
    with pytest.raises(ValueError, match="must be a JSON object"):
        ToolCall(id="c", name="f", arguments="[1]").parsed_arguments()


def test_tool_definition_round_trip():
    definition = ToolDefinition.from_openai(WEATHER)
    assert definition.name == "get_weather"
    assert definition.to_openai() == WEATHER


def test_tool_from_function_derives_schema_and_description():
    def get_weather(city: str, days: int = 1) -> str:
        """Current weather for a city.

        Longer notes the model does not need.
        """
        return f"{city}: sunny for {days} day(s)"

    tool = Tool.from_function(get_weather)
    assert tool.definition == ToolDefinition(
        name="get_weather",
        description="Current weather for a city.",
        parameters={
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "default": 1},
            },
            "required": ["city"],
        },
    )
    assert asyncio.run(tool.invoke('{"city": "Oslo", "days": 2}')) == "Oslo: sunny for 2 day(s)"


def test_tool_invoke_runs_plain_functions_off_the_event_loop_thread():
    def where() -> str:
        return threading.current_thread().name

    async def main() -> tuple[str, str]:
        tool = Tool(name="where", fn=where)
        return threading.current_thread().name, await tool.invoke({})

    loop_thread, tool_thread = asyncio.run(main())
    assert tool_thread != loop_thread


def test_tool_invoke_awaits_coroutine_functions():
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert asyncio.run(Tool.from_function(add).invoke({"a": 2, "b": 3})) == 5


def test_tool_invoke_reports_missing_arguments_and_bad_json():
    tool = Tool.from_function(lambda city: city, name="echo_city")
    with pytest.raises(ValueError, match="'echo_city' is missing required argument"):
        asyncio.run(tool.invoke({}))
    with pytest.raises(ValueError, match="not valid JSON"):
        asyncio.run(tool.invoke("{city"))


# -- streaming ---------------------------------------------------------------------


def test_chunk_round_trip_and_usage_only_chunk():
    chunk = StreamChunk(
        content="Hel", tool_calls=[ToolCallDelta(index=0, id="call_1", name="f", arguments="")]
    )
    wire = chunk.to_openai("chatcmpl-1", "m", 1700000000)
    assert wire["object"] == "chat.completion.chunk"
    assert wire["choices"][0]["delta"] == {
        "content": "Hel",
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "f", "arguments": ""},
            }
        ],
    }
    parsed = StreamChunk.from_openai(wire)
    assert parsed == chunk.model_copy(
        update={"id": "chatcmpl-1", "model": "m", "created": 1700000000}
    )

    usage_only = StreamChunk(usage=Usage(prompt_tokens=1, completion_tokens=2))
    wire = usage_only.to_openai("chatcmpl-1", "m", 0)
    assert wire["choices"] == []
    assert wire["usage"]["total_tokens"] == 3


def test_chunk_needs_an_id_and_model_to_go_on_the_wire():
    with pytest.raises(ValueError, match="needs an id and a model"):
        StreamChunk(content="x").to_openai()


def test_accumulate_joins_content_and_tool_call_deltas_by_index():
    chunks = [
        StreamChunk(role="assistant", id="c1", model="m", created=5),
        StreamChunk(content="Checking "),
        StreamChunk(content="both."),
        StreamChunk(tool_calls=[ToolCallDelta(index=0, id="call_a", name="weather")]),
        StreamChunk(tool_calls=[ToolCallDelta(index=1, id="call_b", name="time")]),
        StreamChunk(tool_calls=[ToolCallDelta(index=0, arguments='{"city":')]),
        StreamChunk(tool_calls=[ToolCallDelta(index=1, arguments='{"tz": "UTC"}')]),
        StreamChunk(tool_calls=[ToolCallDelta(index=0, arguments=' "Rome"}')]),
        StreamChunk(finish_reason="tool_calls"),
        StreamChunk(usage=Usage(prompt_tokens=4, completion_tokens=6)),
    ]
    response = accumulate(chunks)
    assert response.content == "Checking both."
    assert response.tool_calls == [
        ToolCall(id="call_a", name="weather", arguments='{"city": "Rome"}'),
        ToolCall(id="call_b", name="time", arguments='{"tz": "UTC"}'),
    ]
    assert response.tool_calls[0].parsed_arguments() == {"city": "Rome"}
    assert (response.id, response.model, response.created) == ("c1", "m", 5)
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(prompt_tokens=4, completion_tokens=6, total_tokens=10)


def test_accumulate_of_a_tool_call_only_stream_has_no_content():
    chunks = [
        StreamChunk(role="assistant", content=""),
        StreamChunk(tool_calls=[ToolCallDelta(index=0, id="c", name="f", arguments="{}")]),
    ]
    response = accumulate(chunks, model="m")
    assert response.content is None
    assert response.finish_reason == "tool_calls"


def test_accumulate_rejects_a_tool_call_that_never_got_its_name():
    with pytest.raises(ValueError, match="index 0 never received its name"):
        accumulate([StreamChunk(tool_calls=[ToolCallDelta(index=0, id="c")])], model="m")
    with pytest.raises(ValueError, match="pass model="):
        StreamAccumulator().response()


def test_aaccumulate_folds_an_async_stream():
    async def stream() -> AsyncIterator[StreamChunk]:
        for word in ("a ", "b"):
            yield StreamChunk(content=word, model="m")

    assert asyncio.run(aaccumulate(stream())).content == "a b"


def test_sse_lines_decode_to_chunks_until_done():
    events = [
        encode_sse(StreamChunk(content=word).to_openai("c", "m", 0)) for word in ("Hi ", "you")
    ]
    body = (b"".join(events) + encode_sse("[DONE]") + b"data: ignored\n\n").decode()
    chunks = list(iter_sse_chunks(body.splitlines()))
    assert [chunk.content for chunk in chunks] == ["Hi ", "you"]

    async def lines():
        for line in body.splitlines():
            yield line

    async def collect():
        return [chunk async for chunk in aiter_sse_chunks(lines())]

    assert [chunk.content for chunk in asyncio.run(collect())] == ["Hi ", "you"]


def test_sse_stream_cut_short_or_carrying_an_error_raises():
    event = encode_sse(StreamChunk(content="Hi").to_openai("c", "m", 0)).decode()
    with pytest.raises(ValueError, match=r"ended before 'data: \[DONE\]'"):
        list(iter_sse_chunks(event.splitlines()))
    error = encode_sse({"error": {"message": "overloaded"}}).decode()
    with pytest.raises(ValueError, match="mid-stream: overloaded"):
        list(iter_sse_chunks(error.splitlines()))


# -- providers ---------------------------------------------------------------------


class EchoProvider:
    async def complete(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(content=request.messages[-1].text, model=request.model)

    async def complete_stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        for word in request.messages[-1].text.split(" "):
            yield StreamChunk(content=word + " ")

    async def health_check(self) -> None:
        return None

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(supports_tools=False, max_tokens=8192, models=("echo",))


def test_a_plain_class_satisfies_the_provider_protocol_and_streams():
    provider = EchoProvider()
    assert isinstance(provider, Provider)
    assert not isinstance(object(), Provider)
    request = ChatRequest(model="echo", messages=[Message.user("one two")])
    streamed = asyncio.run(aaccumulate(provider.complete_stream(request), model="echo"))
    assert streamed.content.strip() == asyncio.run(provider.complete(request)).content
    assert provider.capabilities().models == ("echo",)


# -- what the upstream said, passed on -------------------------------------------------------

_UPSTREAM = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "system_fingerprint": "fp_1",
    "service_tier": "default",
    "x_vendor": {"a": 1},
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "one", "refusal": None, "annotations": []},
            "logprobs": {"content": [{"token": "one", "logprob": -0.5}]},
            "finish_reason": "stop",
            "x_choice": True,
        },
        {"index": 1, "message": {"role": "assistant", "content": "two"}, "finish_reason": "stop"},
    ],
    "usage": {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 1},
    },
}


def test_a_response_passes_on_everything_the_upstream_said():
    assert ChatResponse.from_openai(_UPSTREAM).to_openai() == _UPSTREAM


def test_a_plugin_changing_the_reply_changes_only_what_it_changed():
    reply = ChatResponse.from_openai(_UPSTREAM)
    changed = reply.model_copy(update={"content": "ONE"}).to_openai()
    assert changed["choices"][0]["message"]["content"] == "ONE"
    assert changed["choices"][1] == _UPSTREAM["choices"][1]
    assert changed["system_fingerprint"] == "fp_1"
    assert changed["choices"][0]["logprobs"] == _UPSTREAM["choices"][0]["logprobs"]


def test_usage_details_add_up_across_rounds():
    a = Usage.from_openai({"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}})
    b = Usage.from_openai({"prompt_tokens": 2, "prompt_tokens_details": {"cached_tokens": 2}})
    assert (a + b).to_openai()["prompt_tokens_details"] == {"cached_tokens": 3}


def test_stream_chunks_keep_their_choice_index_and_unknown_fields():
    wire = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": 1, "delta": {"content": "x", "refusal": None}, "finish_reason": None}
        ],
    }
    chunk = StreamChunk.from_openai(wire)
    assert chunk.index == 1
    assert chunk.to_openai() == {
        **wire,
        "choices": [
            {
                "index": 1,
                "delta": {"content": "x", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    first = StreamChunk(content="a", id="c", model="m")
    assert accumulate([first, chunk]).content == "a"  # the response is the first choice


def test_stream_options_are_forwarded_whole():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
    }
    request = ChatRequest.from_openai(body)
    assert request.include_usage is True
    assert request.to_openai()["stream_options"] == body["stream_options"]
