"""Lab 2 — a custom LLM provider plugin: the checks behind ``%helix check lab2``.

What the lab asks for (see ``labs/lab2_provider_plugin.ipynb``): a provider plugin named
``lab-provider`` whose config has ``api_url`` (an OpenAI-compatible base URL, ``/v1``
included) and ``models``, and whose provider (``get_provider()``) talks to that API with
httpx: ``complete`` (request and response transformed, tool calls included),
``complete_stream`` (the upstream's SSE lines parsed into chunks), ``health_check`` and
``capabilities``.

How the checks work, so you can read them and trust them: the first and last look at the
notebook's own kernel (``helix``). The others start a private upstream
(:func:`helixlab.mockllm.start`, on loopback) and a fresh, private
:class:`~helixlab.Kernel`, load the ``lab-provider`` class that ``helix`` has registered
there with ``api_url`` pointing at that upstream, and then call the provider — directly,
and through a private gateway — and look at what came back and at what the upstream
received. Your notebook's plugin is never touched, and the checks never read your source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from .._net import shared_ssl_context
from ..errors import describe
from ..kernel import Kernel, Plugin, Timeouts
from ..llm import ChatRequest, ChatResponse, Message, StreamChunk, ToolCall, ToolDefinition
from . import _probes
from ._core import Missing, Probe, lab
from ._held import HELD_TEXT, HOLD, HeldStream

__all__ = ["NAME"]

NAME = "lab-provider"
MODEL = "mock-small"
OTHER_MODEL = "other-model"
OTHER = "other-provider"

#: Short, so that a plugin that hangs fails its check quickly instead of blocking the cell.
TIMEOUTS = Timeouts(init=5, start=5, stop=5, health=3, export_state=5, import_state=5, drain=5)
CALL_TIMEOUT = 10.0

WEATHER = ToolDefinition(
    name="get_weather",
    description="The weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)

check = lab("lab2", "a custom LLM provider plugin", plugins=(NAME,))

_LOOPBACK = re.compile(r"https?://(?:127\.0\.0\.1|localhost|\[::1\]):\d+(?:/v1)?")


def _scrub(text: str) -> str:
    """Error text without the upstream's address (its port changes on every run)."""
    return _LOOPBACK.sub("{api_url}", text)


def _why(exc: BaseException) -> str:
    """One line about ``exc`` (httpx adds a second line pointing at MDN; dropped)."""
    return _scrub(describe(exc)).splitlines()[0]


# -- a second provider, so routing by model can be observed -------------------------------


_Other = _probes.answering_provider(
    OTHER,
    models=(OTHER_MODEL,),
    content="from the other provider",
    description="the checks' second provider, serving other-model",
)


# -- the private setup --------------------------------------------------------------------


@dataclass
class _Setup:
    """A private upstream and a private kernel running the learner's class against it."""

    kernel: Kernel
    upstream: Any

    @property
    def provider(self) -> Any:
        plugin: Any = self.kernel.get(NAME)  # the learner's class: whatever it defines
        try:
            return plugin.get_provider()
        except Exception as exc:
            raise Missing(f"{NAME}.get_provider() raised {_why(exc)}.") from None

    def call(self, coro: Any) -> Any:
        """Run ``coro`` on the private kernel's loop, where the gateway would run it."""
        return self.kernel.run(coro, timeout=CALL_TIMEOUT)

    def last_sent(self) -> dict[str, Any] | None:
        sent = self.upstream.requests
        return sent[-1] if sent else None


@contextlib.contextmanager
def _setup(probe: Probe, *extra: type[Plugin], api_url: str | None = None) -> Iterator[_Setup]:
    """``api_url``: another upstream than the mock (which then only stands by)."""
    from .. import mockllm

    cls = _probes.registered(probe, NAME)
    with (
        mockllm.start(models=(MODEL, "mock-large")) as upstream,
        _probes.private_kernel(TIMEOUTS, cls, *extra) as kernel,
    ):
        _probes.configure(
            kernel,
            NAME,
            {"api_url": api_url or upstream.url},
            shown="{'api_url': ...}",
            fix="LabProviderConfig needs an `api_url: str` field (step 1).",
        )
        report = kernel.load_all()
        if NAME in report.failed:
            raise Missing(
                f"a fresh {NAME} did not start: {_scrub(str(report.failed[NAME]))}. Look at "
                f"init() and start()."
            )
        yield _Setup(kernel, upstream)


def _failed(setup: _Setup, call: str, exc: BaseException, where: str) -> Missing:
    """The hint for a provider call that raised: an empty request is the usual cause."""
    sent = setup.last_sent()
    if sent is not None and not sent.get("messages"):
        return Missing(
            "the upstream received a request without messages and refused it (400): "
            "to_upstream() must put the request's messages in the body, each as "
            "message.to_openai() (step 2)."
        )
    return Missing(f"{call} raised {_why(exc)}; {where}.")


def _complete(setup: _Setup, request: ChatRequest, step: str) -> ChatResponse:
    provider = setup.provider
    try:
        reply = setup.call(provider.complete(request))
    except Exception as exc:
        raise _failed(setup, "provider.complete(...)", exc, f"see {step}") from None
    if not isinstance(reply, ChatResponse):
        raise Missing(
            f"provider.complete(...) returned {type(reply).__name__}, not a ChatResponse: "
            f"from_upstream() builds one (step 2)."
        )
    return reply


# -- the checks ---------------------------------------------------------------------------


@check(f"{NAME} is registered and active in helix")
def registered_and_active(probe: Probe) -> None:
    _probes.require_active(probe, NAME, scrub=_scrub)


@check('a completion returns the upstream\'s reply, "Echo: <your message>", as a ChatResponse')
def completes(probe: Probe) -> None:
    with _setup(probe) as setup:
        request = ChatRequest(model=MODEL, messages=[Message.user("hello from lab 2")])
        reply = _complete(setup, request, "step 2")
        sent = setup.last_sent() or {}
        if sent.get("model") != MODEL:
            raise Missing(
                f"the upstream was asked for model {sent.get('model')!r}, not {MODEL!r}: "
                f"to_upstream() must send request.model (step 2)."
            )
        if reply.content != "Echo: hello from lab 2":
            raise Missing(
                f"the upstream answered 'Echo: hello from lab 2' and the ChatResponse's "
                f"content is {reply.content!r}: from_upstream() must take "
                f'data["choices"][0]["message"]["content"] (step 2).'
            )
        if reply.model != MODEL:
            raise Missing(f"the ChatResponse's model is {reply.model!r}, expected {MODEL!r}.")


@check("streaming yields several chunks that add up to the full reply")
def streams(probe: Probe) -> None:
    with _setup(probe) as setup:
        provider = setup.provider
        request = ChatRequest(
            model=MODEL, messages=[Message.user("stream this reply please")], stream=True
        )

        async def collect() -> list[Any]:
            return [chunk async for chunk in provider.complete_stream(request)]

        try:
            chunks = setup.call(collect())
        except json.JSONDecodeError as exc:
            raise Missing(_sse_hint(probe, exc)) from None
        except Exception as exc:
            call = "iterating provider.complete_stream(...)"
            raise _failed(setup, call, exc, "look at parse_sse_line() (step 3)") from None
        wrong = [type(c).__name__ for c in chunks if not isinstance(c, StreamChunk)]
        if wrong:
            raise Missing(
                f"complete_stream yielded {wrong[0]} objects; yield StreamChunk objects "
                f"(StreamChunk.from_openai(json.loads(payload))), step 3."
            )
        pieces = [c.content for c in chunks if c.content]
        if len(pieces) < 2:
            raise Missing(
                f"the upstream streamed the reply word by word, and complete_stream yielded "
                f"{len(pieces)} chunk(s) with content. parse_sse_line() must turn each "
                f"'data: {{...}}' line into a StreamChunk and skip blank lines and "
                f"'data: [DONE]' (step 3)."
            )
        text = "".join(pieces)
        if text != "Echo: stream this reply please":
            raise Missing(
                f"the chunks add up to {text!r}, expected 'Echo: stream this reply please'; "
                f"keep every chunk's content as it is (step 3)."
            )


def _sse_hint(probe: Probe, exc: json.JSONDecodeError) -> str:
    """Why json.loads() choked while streaming: which kind of SSE line it was given."""
    parse = probe.namespace.get("parse_sse_line")
    for line, why in (
        ("", "blank lines separate the events"),
        ("data: [DONE]", "'data: [DONE]' ends the stream and is not JSON"),
        (": keep-alive", "lines starting with ':' are comments"),
    ):
        try:
            if callable(parse):
                parse(line)
        except ValueError:
            return (
                f"parse_sse_line({line!r}) raised JSONDecodeError: {why}. Return None for "
                f"it, and call json.loads() only on the payload of a 'data: {{...}}' line "
                f"(step 3)."
            )
        except Exception:  # another failure: the general hint below
            continue
    return (
        f"iterating provider.complete_stream(...) raised JSONDecodeError ({exc.msg}): "
        f"json.loads() was given something that is not JSON. The stream also has blank lines "
        f"between events and 'data: [DONE]' at the end: parse_sse_line() must return None "
        f"for those, and parse only the payload after 'data: ' (step 3)."
    )


@check("chunks reach the caller while the upstream is still streaming")
def streams_as_it_arrives(probe: Probe) -> None:
    with HeldStream(MODEL) as held, _setup(probe, api_url=held.url) as setup:
        provider = setup.provider
        request = ChatRequest(model=MODEL, messages=[Message.user("hold on")], stream=True)

        async def watch() -> tuple[bool, list[Any]]:
            """(whether a chunk arrived while the upstream held the rest, every chunk)"""
            got: list[Any] = []
            arrived = asyncio.Event()

            async def consume() -> None:
                async for chunk in provider.complete_stream(request):
                    got.append(chunk)
                    arrived.set()

            task = asyncio.ensure_future(consume())
            try:
                await asyncio.wait_for(asyncio.shield(arrived.wait()), HOLD / 2)
                early = True
            except TimeoutError:
                early = False
            held.release.set()  # let the upstream finish, whatever happened
            await asyncio.wait_for(task, CALL_TIMEOUT)
            return early, got

        try:
            early, chunks = setup.call(watch())
        except Exception as exc:
            raise Missing(
                f"iterating provider.complete_stream(...) raised {_why(exc)}; look at "
                f"parse_sse_line() and the streaming check above (step 3)."
            ) from None
        if not chunks:
            raise Missing(
                "complete_stream yielded no chunk at all; make the streaming check above "
                "pass first (parse_sse_line(), step 3)."
            )
        if not early:
            raise Missing(
                f"the upstream sent its first chunk and then waited; complete_stream yielded "
                f"nothing for {HOLD / 2:g}s, and everything once the upstream had finished. "
                f"It must yield each chunk as it arrives: read the response line by line "
                f"(async for line in response.aiter_lines()), not the whole body first "
                f"(response.aread(), .text) to split it afterwards (step 3)."
            )
        first, rest = chunks[0], chunks[1:]
        text = "".join(c.content or "" for c in [first, *rest])
        if text != HELD_TEXT:
            raise Missing(f"the streamed chunks add up to {text!r}, expected {HELD_TEXT!r}.")


@check("temperature, max_tokens and extra fields (seed, top_p, ...) reach the upstream")
def passes_settings(probe: Probe) -> None:
    with _setup(probe) as setup:
        request = ChatRequest(
            model=MODEL,
            messages=[Message.user("settings please")],
            temperature=0.3,
            max_tokens=50,
            extra={"seed": 7, "top_p": 0.9},
        )
        _complete(setup, request, "step 2")
        sent = setup.last_sent() or {}
        wanted = {"temperature": 0.3, "max_tokens": 50, "seed": 7, "top_p": 0.9}
        lost = [key for key, value in wanted.items() if sent.get(key) != value]
        if lost:
            raise Missing(
                f"the request set {', '.join(lost)}, and the upstream did not receive "
                f"{'it' if len(lost) == 1 else 'them'}: to_upstream() must send "
                f"request.temperature and request.max_tokens when they are set, and every "
                f"field of request.extra as it is (body.update(request.extra)), step 2."
            )


@check("a tool offered comes back as a ToolCall, and the tool's result gets a final answer")
def tool_calls(probe: Probe) -> None:
    with _setup(probe) as setup:
        question = Message.user("Use get_weather for city: Paris")
        request = ChatRequest(model=MODEL, messages=[question], tools=[WEATHER])
        reply = _complete(setup, request, "step 4")
        sent = setup.last_sent() or {}
        offered = [t.get("function", {}).get("name") for t in sent.get("tools") or []]
        if offered != ["get_weather"]:
            raise Missing(
                f"the request offered the tool get_weather, and the upstream received tools "
                f"{offered or 'none'}: to_upstream() must send request.tools, each as "
                f"tool.to_openai() (step 4)."
            )
        calls = reply.tool_calls
        if len(calls) != 1 or not isinstance(calls[0], ToolCall):
            raise Missing(
                f"the upstream asked for one call of get_weather and the ChatResponse has "
                f"tool_calls={calls!r}: from_upstream() must turn message['tool_calls'] into "
                f"ToolCall(id=..., name=..., arguments=...) objects (step 4)."
            )
        call = calls[0]
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            arguments = call.arguments
        if call.name != "get_weather" or arguments != {"city": "Paris"}:
            raise Missing(
                f"the ToolCall is {call.name!r} with arguments {call.arguments!r}; expected "
                f"'get_weather' with the JSON text '{{\"city\": \"Paris\"}}' (the function's "
                f"name and arguments, step 4)."
            )
        if reply.finish_reason != "tool_calls":
            raise Missing(
                f"finish_reason is {reply.finish_reason!r}; pass the upstream's "
                f"choice['finish_reason'] on (step 2)."
            )
        follow_up = ChatRequest(
            model=MODEL,
            messages=[question, reply.message, Message.tool(call.id, "18°C and sunny")],
            tools=[WEATHER],
        )
        final = _complete(setup, follow_up, "step 4")
        if final.content != "The get_weather tool returned: 18°C and sunny":
            raise Missing(
                f"after the tool's result was sent back, the upstream's answer became "
                f"{final.content!r}; expected 'The get_weather tool returned: 18°C and sunny'. "
                f"to_upstream() must send every message, tool calls and tool results "
                f"included (message.to_openai() carries them), step 2."
            )


@check("capabilities list the models, and the gateway routes each model to its provider")
def routes_by_model(probe: Probe) -> None:
    with _setup(probe, _Other) as setup:
        try:
            caps = setup.provider.capabilities()
        except Exception as exc:
            raise Missing(f"provider.capabilities() raised {_why(exc)}.") from None
        models = tuple(getattr(caps, "models", ()) or ())
        if MODEL not in models:
            raise Missing(
                f"capabilities().models is {models!r}; it must list the models of the config "
                f"(mock-small and mock-large), so the gateway knows where to send them."
            )
        server = setup.kernel.serve(port=0)
        with httpx.Client(
            base_url=server.openai_base_url,
            timeout=CALL_TIMEOUT,
            limits=httpx.Limits(max_keepalive_connections=0),
            verify=shared_ssl_context(),
        ) as client:
            seen = {}
            for model in (MODEL, OTHER_MODEL):
                body = {"model": model, "messages": [{"role": "user", "content": "route me"}]}
                response = client.post("/chat/completions", json=body)
                if response.status_code != 200:
                    try:
                        message = response.json()["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        message = response.text[:200]
                    raise Missing(
                        f"POST /v1/chat/completions for {model} through the gateway answered "
                        f"{response.status_code}: {_scrub(message).splitlines()[0]} Fix the "
                        f"completion first (the second check)."
                    )
                seen[model] = response.headers.get("x-helixlab-provider")
        expected = {MODEL: NAME, OTHER_MODEL: OTHER}
        if seen != expected:
            raise Missing(
                f"the gateway sent {seen}; expected {expected}. List exactly the models this "
                f"provider serves in capabilities().models."
            )


@check(f"{NAME} is healthy: its health check reaches the upstream")
def healthy(probe: Probe) -> None:
    _probes.require_healthy(
        probe,
        NAME,
        advice="its health_check() awaits the provider's, which GETs {api_url}/models.",
        why=_why,
        scrub=_scrub,
    )
    with _setup(probe) as setup:
        setup.upstream.stop()  # a provider whose upstream is gone must not say it is fine
        down = setup.kernel.health().get(NAME)
        if down is not None and down.healthy:
            raise Missing(
                f"with its upstream stopped, {NAME} still reports healthy: health_check() must "
                f"ask the upstream (GET {{api_url}}/models) and raise when that fails."
            )
