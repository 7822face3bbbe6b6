"""What clients get back through the gateway: the official openai SDK, LangChain's ChatOpenAI,
LiteLLM's SDK and raw HTTP, against custom-provider in front of the mock upstream, all over
loopback. A gateway passes on what the upstream said (n choices, logprobs, fingerprints,
refusals, usage details, fields it does not know) unless a plugin changes it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

import helixlab as hx
import helixlab.gateway as gw
from helixlab import mockllm

from conftest import FAST

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from the network

HELLO = [{"role": "user", "content": "hello there"}]
ORIGIN = "http://app.example"


@pytest.fixture(scope="module")
def upstream() -> Iterator[mockllm.MockServer]:
    with mockllm.start() as server:
        yield server


@pytest.fixture
def mock(upstream: mockllm.MockServer) -> Iterator[mockllm.MockLLM]:
    upstream.mock.reset()
    yield upstream.mock
    upstream.mock.reset()


@pytest.fixture(scope="module")
def kernel(upstream: mockllm.MockServer) -> Iterator[hx.Kernel]:
    config = f"""
plugins:
  custom-provider:
    config: {{api_url: "{upstream.url}", retry_count: 0, models: [mock-small, mock-large]}}
"""
    with hx.Kernel.from_config(config, timeouts=FAST) as k:
        assert k.load_all().ok
        yield k


@pytest.fixture(scope="module")
def server(kernel: hx.Kernel) -> Iterator[gw.GatewayServer]:
    with kernel.serve(port=0) as s:
        yield s


@pytest.fixture
def client(server: gw.GatewayServer, mock: mockllm.MockLLM) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as c:
        yield c


@pytest.fixture
def http(server: gw.GatewayServer, mock: mockllm.MockLLM) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def _events(response: httpx.Response) -> list[Any]:
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def _texts(chunks: list[Any]) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"] if isinstance(chunk, dict) else chunk.choices:
            index = choice["index"] if isinstance(choice, dict) else choice.index
            delta = choice["delta"] if isinstance(choice, dict) else choice.delta
            content = delta.get("content") if isinstance(delta, dict) else delta.content
            texts[index] = texts.get(index, "") + (content or "")
    return texts


# -- the openai SDK ------------------------------------------------------------------------


def test_models_retrieve_answers_a_served_model_and_404s_an_unknown_one(client):
    model = client.models.retrieve("mock-small")
    assert (model.id, model.object, model.owned_by) == ("mock-small", "model", "custom-provider")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
    assert caught.value.body["param"] == "model"
    assert "no-such-model" in caught.value.body["message"]


def test_n_choices_all_come_back(client):
    reply = client.chat.completions.create(model="mock-small", messages=HELLO, n=2)
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.message.content for c in reply.choices] == [
        "Echo: hello there",
        "Echo: hello there (choice 1)",
    ]


def test_n_choices_all_stream(client):
    stream = client.chat.completions.create(model="mock-small", messages=HELLO, n=2, stream=True)
    assert _texts(list(stream)) == {0: "Echo: hello there", 1: "Echo: hello there (choice 1)"}


def test_logprobs_and_top_logprobs_come_back(client):
    reply = client.chat.completions.create(
        model="mock-small", messages=HELLO, logprobs=True, top_logprobs=2
    )
    tokens = reply.choices[0].logprobs.content
    assert [t.token for t in tokens] == ["Echo: ", "hello ", "there"]
    assert tokens[0].logprob == -0.25
    assert [alt.logprob for alt in tokens[0].top_logprobs] == [-0.25, -0.5]


def test_logprobs_stream_with_each_chunk(client):
    stream = client.chat.completions.create(
        model="mock-small", messages=HELLO, logprobs=True, top_logprobs=1, stream=True
    )
    tokens = [
        t.token for chunk in stream for c in chunk.choices if c.logprobs for t in c.logprobs.content
    ]
    assert tokens == ["Echo: ", "hello ", "there"]


def test_fingerprint_tier_refusal_annotations_and_usage_details_pass_through(client, mock):
    citation = {
        "type": "url_citation",
        "url_citation": {
            "url": "https://x.example",
            "title": "X",
            "start_index": 0,
            "end_index": 4,
        },
    }
    mock.add_fields(
        message={"refusal": "I will not.", "annotations": [citation]},
        usage={
            "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
        },
    )
    reply = client.chat.completions.create(model="mock-small", messages=HELLO)
    assert reply.system_fingerprint == "fp_helixlab_mock"
    assert reply.service_tier == "default"
    message = reply.choices[0].message
    assert message.refusal == "I will not."
    assert message.annotations[0].url_citation.url == "https://x.example"
    assert reply.usage.prompt_tokens_details.cached_tokens == 3
    assert reply.usage.completion_tokens_details.reasoning_tokens == 2


def test_stream_usage_details_and_fingerprint_pass_through(client, mock):
    mock.add_fields(usage={"prompt_tokens_details": {"cached_tokens": 5}})
    chunks = list(
        client.chat.completions.create(
            model="mock-small",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {chunk.system_fingerprint for chunk in chunks} == {"fp_helixlab_mock"}
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 5


def test_stream_options_beyond_include_usage_are_forwarded(client, mock):
    options = {"include_usage": True, "include_obfuscation": False}
    list(
        client.chat.completions.create(
            model="mock-small", messages=HELLO, stream=True, stream_options=options
        )
    )
    assert mock.requests[-1]["stream_options"] == options


def test_request_id_is_set_and_an_incoming_one_is_honoured(client):
    reply = client.chat.completions.create(model="mock-small", messages=HELLO)
    assert reply._request_id is not None and reply._request_id.startswith("req_")
    other = client.chat.completions.create(model="mock-small", messages=HELLO)
    assert other._request_id != reply._request_id
    raw = client.chat.completions.with_raw_response.create(
        model="mock-small", messages=HELLO, extra_headers={"x-request-id": "trace-42.a:b"}
    )
    assert raw.headers["x-request-id"] == "trace-42.a:b"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nope", extra_headers={"x-request-id": "trace-43"})
    assert caught.value.request_id == "trace-43"


# -- raw HTTP (what curl sees) -----------------------------------------------------------------


def test_unknown_fields_pass_through_json_and_stream(http, mock):
    mock.add_fields(response={"x_vendor": {"region": "eu"}}, message={"x_note": "kept"})
    body = {"model": "mock-small", "messages": HELLO}
    reply = http.post("/v1/chat/completions", json=body).json()
    assert reply["x_vendor"] == {"region": "eu"}
    assert reply["choices"][0]["message"]["x_note"] == "kept"
    response = http.post("/v1/chat/completions", json={**body, "stream": True, "n": 2})
    chunks = _events(response)
    assert all(chunk["x_vendor"] == {"region": "eu"} for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["x_note"] == "kept"
    assert {c["index"] for chunk in chunks for c in chunk["choices"]} == {0, 1}


def test_unknown_model_id_is_a_404_in_openai_shape(http):
    response = http.get("/v1/models/ghost/model")
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "model_not_found",
        "model",
    )
    assert response.headers["x-request-id"].startswith("req_")


def test_a_malformed_request_id_is_replaced(http):
    response = http.get("/v1/models", headers={"x-request-id": "bad id\twith spaces"})
    assert response.headers["x-request-id"].startswith("req_")


def test_cors_is_off_by_default(http):
    headers = {"origin": ORIGIN, "access-control-request-method": "POST"}
    response = http.options("/v1/chat/completions", headers=headers)
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
    answer = http.get("/v1/models", headers={"origin": ORIGIN})
    assert "access-control-allow-origin" not in answer.headers


def test_cors_when_configured_answers_preflights_and_exposes_the_request_id(kernel, mock):
    with (
        kernel.serve(port=0, cors_origins=[ORIGIN]) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        preflight = http.options(
            "/v1/chat/completions",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        body = {"model": "mock-small", "messages": HELLO}
        answer = http.post("/v1/chat/completions", json=body, headers={"origin": ORIGIN})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in answer.headers["access-control-expose-headers"]
        refused = http.options(
            "/v1/chat/completions",
            headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers


def test_cors_config_is_validated():
    with pytest.raises(hx.ConfigError, match="cors_max_age"):
        gw.gateway_config({"cors_origins": [ORIGIN], "cors_max_age": -1})


# -- LangChain's ChatOpenAI ----------------------------------------------------------------------


@pytest.fixture
def langchain_model(server, mock):
    from langchain_openai import ChatOpenAI

    def make(**options: Any) -> Any:
        return ChatOpenAI(
            model="mock-small",
            base_url=server.openai_base_url,
            api_key="k",
            max_retries=0,
            **options,
        )

    return make


def test_langchain_keeps_cached_and_reasoning_tokens_and_the_fingerprint(langchain_model, mock):
    mock.add_fields(
        usage={
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
    )
    message = langchain_model().invoke("hello there")
    assert message.content == "Echo: hello there"
    assert message.response_metadata["system_fingerprint"] == "fp_helixlab_mock"
    assert message.response_metadata["service_tier"] == "default"
    assert message.usage_metadata["input_token_details"]["cache_read"] == 3
    assert message.usage_metadata["output_token_details"]["reasoning"] == 2


def test_langchain_n_and_logprobs(langchain_model):
    from langchain_core.messages import HumanMessage

    result = langchain_model(n=2, logprobs=True).generate([[HumanMessage("hello there")]])
    texts = [g.text for g in result.generations[0]]
    assert texts == ["Echo: hello there", "Echo: hello there (choice 1)"]
    logprobs = result.generations[0][0].generation_info["logprobs"]["content"]
    assert [t["token"] for t in logprobs] == ["Echo: ", "hello ", "there"]


def test_langchain_stream_with_usage(langchain_model, mock):
    mock.add_fields(usage={"prompt_tokens_details": {"cached_tokens": 1}})
    chunks = list(langchain_model(stream_usage=True).stream("hello there"))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == "Echo: hello there"
    assert total.usage_metadata["input_token_details"]["cache_read"] == 1
    assert total.response_metadata["system_fingerprint"] == "fp_helixlab_mock"


# -- LiteLLM's SDK --------------------------------------------------------------------------


@pytest.fixture
def litellm_call(server, mock):
    import litellm

    litellm.telemetry = False

    def call(**options: Any) -> Any:
        return litellm.completion(
            model="openai/mock-small",
            api_base=server.openai_base_url,
            api_key="k",
            messages=HELLO,
            num_retries=0,
            **options,
        )

    return call


def test_litellm_gets_every_choice_the_fingerprint_and_usage_details(litellm_call, mock):
    mock.add_fields(usage={"prompt_tokens_details": {"cached_tokens": 3}})
    reply = litellm_call(n=2, logprobs=True, top_logprobs=1)
    assert [c.message.content for c in reply.choices] == [
        "Echo: hello there",
        "Echo: hello there (choice 1)",
    ]
    assert reply.system_fingerprint == "fp_helixlab_mock"
    assert reply.usage.prompt_tokens_details.cached_tokens == 3
    assert reply.choices[0].logprobs["content"][0]["token"] == "Echo: "


def test_litellm_streams_every_choice(litellm_call):
    chunks = list(litellm_call(n=2, stream=True))
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "Echo: hello there", 1: "Echo: hello there (choice 1)"}


def test_a_middleware_setting_its_own_request_id_wins(upstream):
    class RequestId(hx.MiddlewarePlugin):
        name = "request-id"

        def get_middleware(self) -> Any:
            def wrap(app: Any) -> Any:
                async def middleware(scope: Any, receive: Any, send: Any) -> None:
                    async def send_with_id(message: Any) -> None:
                        if message["type"] == "http.response.start":
                            headers = [*message.get("headers", ()), (b"x-request-id", b"mine-1")]
                            message = {**message, "headers": headers}
                        await send(message)

                    await app(scope, receive, send_with_id)

                return middleware

            return wrap

    config = f"""
plugins:
  custom-provider:
    config: {{api_url: "{upstream.url}", models: [mock-small]}}
"""
    with hx.Kernel.from_config(config, timeouts=FAST) as kernel:
        kernel.register(RequestId)
        assert kernel.load_all().ok
        with kernel.serve(port=0) as server:
            response = httpx.get(server.url + "/v1/models")
    assert response.headers.get_list("x-request-id") == ["mine-1"]
