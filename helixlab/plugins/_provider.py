"""``custom-provider``: any OpenAI-compatible chat-completions API, through httpx.

With no ``api_url`` it talks to the embedded upstream, :mod:`helixlab.mockllm`, started on
first use on a loopback port, shared by every provider in the process and stopped when the
interpreter exits. That is what labs and tests use: no key, no network, same answers every
time.

Pointing it at a real service is one config change, ``api_url`` (the base URL an OpenAI
client would use, ``/v1`` included), plus a key where the service needs one:

.. code-block:: yaml

    custom-provider:
      config:
        api_url: https://api.openai.com/v1      # Ollama: http://localhost:11434/v1
        api_key: ${OPENAI_API_KEY}              # vLLM:   http://localhost:8000/v1
        timeout: 30s
        retry_count: 3
        models: [gpt-4o-mini]

Failures are retried ``retry_count`` times with exponential backoff (``retry_backoff`` ×
2ⁿ), waiting at least as long as a ``Retry-After`` header asks; a wait longer than
``max_retry_delay`` is not worth holding the client for, so the error is raised at once.
Retried are the statuses in ``RETRY_STATUSES`` and a request that never left (no
connection, or none free in the pool; not a certificate refused); one that may have
reached the upstream (a read timeout, a connection lost after sending) is not sent again:
a chat completion is not idempotent, the upstream may be running (and billing) it.
Streams are retried only before their first chunk. Every failure surfaces as
:class:`~helixlab.plugins.UpstreamError` with the upstream's status and error body.

``capabilities()`` is cheap and synchronous: its models are the ``models`` setting (or the
embedded upstream's), never a network call. Health is ``GET {api_url}{health_path}``
(``/models`` by default, which OpenAI, Ollama and vLLM all serve).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email.utils
import random
import re
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator

from helixlab.kernel import Context, Duration, PluginConfig, ProviderPlugin
from helixlab.llm import (
    ChatRequest,
    ChatResponse,
    ProviderCapabilities,
    StreamChunk,
    aiter_sse_chunks,
)

from ..errors import UpstreamError
from ._transport import Upstream

__all__ = [
    "CustomProvider",
    "CustomProviderConfig",
    "OpenAICompatibleProvider",
    "embedded_upstream",
]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
#: Transport failures before a byte of the request was sent: the only ones worth retrying.
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _retryable(exc: httpx.TransportError) -> bool:
    """Nothing was sent, and trying again may help: not a certificate refused."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    return isinstance(exc, UNSENT) and cause is None


_USER_AGENT = "helixlab-custom-provider/1.0"
_TOKEN = re.compile(r"[!-~]*")  # what may follow "Bearer " in a header, as the key is sent


class CustomProviderConfig(PluginConfig):
    """Where the upstream is, how to authenticate, how long to wait, how often to retry."""

    api_url: str | None = None
    api_key: SecretStr | None = None
    timeout: Duration = 30.0
    retry_count: int = Field(default=3, ge=0, le=10)
    retry_backoff: Duration = 0.5
    max_retry_delay: Duration = 30.0
    models: list[str] = Field(default_factory=list)
    supports_tools: bool = True
    max_tokens: int | None = Field(default=None, ge=1)
    health_path: str = "/models"

    @field_validator("api_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        url = url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("api_url must be an http(s) URL such as 'https://api.openai.com/v1'")
        if parts.query or parts.fragment:  # the request paths are appended to it
            raise ValueError("api_url must be a base URL, without '?query' or '#fragment'")
        try:
            parts.port  # noqa: B018 (raises for a port out of range)
            httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as exc:
            raise ValueError(f"api_url is not a valid URL: {exc}") from None
        return url

    @field_validator("api_key")
    @classmethod
    def _check_key(cls, key: SecretStr | None) -> SecretStr | None:
        """Surrounding whitespace (a newline read from a file) trimmed; inside, only what
        a header value can carry."""
        if key is None:
            return None
        value = key.get_secret_value().strip()
        if not _TOKEN.fullmatch(value):
            raise ValueError("api_key must be printable ASCII without spaces or line breaks")
        return SecretStr(value)

    @field_validator("health_path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        path = path if path.startswith("/") else "/" + path
        try:
            httpx.URL("http://h" + path)
        except httpx.InvalidURL as exc:
            raise ValueError(f"health_path is not a valid URL path: {exc}") from None
        return path


# -- the embedded upstream ---------------------------------------------------------------

_embedded_lock = threading.Lock()
_embedded: Any = None


def embedded_upstream() -> Any:
    """The process-wide :mod:`helixlab.mockllm` server, started on first call.

    Blocks until it listens (a fraction of a second); stopped at interpreter exit.
    """
    global _embedded
    with _embedded_lock:
        if _embedded is None or not _embedded.running:
            from helixlab import mockllm

            _embedded = mockllm.start()
            atexit.register(_embedded.stop)
        return _embedded


# -- the provider ------------------------------------------------------------------------


class OpenAICompatibleProvider:
    """A :class:`helixlab.llm.Provider` over an OpenAI-compatible API.

    ``sleep`` is the coroutine used to wait between retries (tests replace it to record the
    waits instead of sleeping).
    """

    def __init__(
        self, config: CustomProviderConfig, base_url: str, models: tuple[str, ...], name: str
    ):
        self.config = config
        self.base_url = base_url
        self._chat_url = self._url("/chat/completions")  # parsed once, not per request
        self.name = name
        self._models = models
        self._client: Upstream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep

    # -- lifecycle (driven by the plugin) ------------------------------------------------

    def open(self) -> None:
        """Create the shared HTTP client, bound to the running loop (the kernel's)."""
        self._client = self._new_client()
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _new_client(self) -> Upstream:
        headers = {"User-Agent": _USER_AGENT}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        return Upstream(headers=headers, timeout=httpx.Timeout(self.config.timeout))

    def _url(self, path: str) -> httpx.URL:
        return httpx.URL(self.base_url.rstrip("/") + path)

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[Upstream]:
        """The shared client on the loop it belongs to; elsewhere (a notebook's own loop)
        a short-lived one, since pooled connections cannot cross event loops."""
        if self._client is not None and asyncio.get_running_loop() is self._loop:
            yield self._client
            return
        if self._client is None and self._loop is not None:
            raise RuntimeError(f"Provider {self.name!r} is stopped.")
        async with self._new_client() as client:
            yield client

    # -- the Provider protocol -----------------------------------------------------------

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            supports_streaming=True,
            supports_tools=self.config.supports_tools,
            max_tokens=self.config.max_tokens,
            models=self._models,
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One chat completion, retried on transient failures."""
        body = request.to_openai()
        body.pop("stream", None)
        body.pop("stream_options", None)
        url = self._chat_url
        async with self._http() as client:
            attempt = 0
            while True:
                try:
                    response = await _read(
                        await client.send(client.request("POST", url, json=body))
                    )
                except httpx.TransportError as exc:
                    error = _transport_error(exc, self.name, attempt + 1)
                    if not _retryable(exc):
                        raise error from exc
                else:
                    if response.status_code < 400:
                        return _parse_completion(response, self.name)
                    error = _status_error(response, self.name, attempt + 1)
                attempt = await self._wait_or_raise(error, attempt)

    async def complete_stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Chunks as the upstream sends them, parsed incrementally from its SSE body."""
        body = request.to_openai()
        body["stream"] = True
        url = self._chat_url
        async with self._http() as client:
            attempt = 0
            while True:
                error: UpstreamError
                try:
                    response = await client.send(client.request("POST", url, json=body))
                    try:
                        if response.status_code < 400:
                            async for chunk in _relay(response, self.name):
                                yield chunk
                            return
                        await response.aread()
                        error = _status_error(response, self.name, attempt + 1)
                    finally:
                        await response.aclose()
                except httpx.TransportError as exc:
                    error = _transport_error(exc, self.name, attempt + 1)
                    if not _retryable(exc):
                        raise error from exc
                attempt = await self._wait_or_raise(error, attempt)

    async def health_check(self) -> None:
        """Raise UpstreamError unless ``GET {api_url}{health_path}`` answers 2xx."""
        url = self._url(self.config.health_path)
        async with self._http() as client:
            try:
                response = await _read(await client.send(client.request("GET", url)))
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.name, 1) from exc
            if response.status_code >= 300:
                raise _status_error(response, self.name, 1)

    # -- retries -------------------------------------------------------------------------

    async def _wait_or_raise(self, error: UpstreamError, attempt: int) -> int:
        """Sleep before the next attempt, or raise ``error`` when retrying is pointless."""
        retryable = error.status is None or error.status in RETRY_STATUSES
        if not retryable or attempt >= self.config.retry_count:
            raise error
        delay = self.config.retry_backoff * (2**attempt)
        if delay:
            delay *= 1 + random.random() * 0.1  # jitter, so retries of many clients spread out
        if error.retry_after is not None:
            if error.retry_after > self.config.max_retry_delay:
                raise error
            delay = max(delay, error.retry_after)
        delay = min(delay, self.config.max_retry_delay)
        if delay > 0:
            await self.sleep(delay)
        return attempt + 1

    def __repr__(self) -> str:
        return f"<OpenAICompatibleProvider {self.name!r} {self.base_url}>"


async def _read(response: httpx.Response) -> httpx.Response:
    """``response`` with its body read (the connection back in the pool), closed either way."""
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


async def _relay(response: httpx.Response, name: str) -> AsyncIterator[StreamChunk]:
    """Parse SSE lines into chunks as they arrive; a broken stream becomes UpstreamError."""
    try:
        async for chunk in aiter_sse_chunks(response.aiter_lines()):
            yield chunk
    except ValueError as exc:
        raise _no_answer(f"Upstream stream failed: {exc}", "upstream_stream_error", name) from exc
    except httpx.TimeoutException as exc:
        what = f"Upstream stopped sending before the stream finished ({type(exc).__name__})."
        raise _no_answer(what, "upstream_timeout", name) from exc
    except httpx.TransportError as exc:
        what = f"Upstream closed the stream before it finished ({type(exc).__name__})."
        raise _no_answer(what, "upstream_stream_error", name) from exc


def _parse_completion(response: httpx.Response, name: str) -> ChatResponse:
    try:
        return ChatResponse.from_openai(response.json())
    except ValueError as exc:  # JSONDecodeError is a ValueError too
        what = f"Upstream returned a malformed completion: {exc}"
        raise _no_answer(what, "upstream_malformed_response", name) from exc


def _no_answer(message: str, code: str, name: str, attempts: int = 1) -> UpstreamError:
    """No usable answer came (no HTTP status to pass on): ``code`` says what went wrong."""
    return UpstreamError(
        message, status=None, error={"code": code}, provider=name, attempts=attempts
    )


def _status_error(response: httpx.Response, name: str, attempts: int) -> UpstreamError:
    status = response.status_code
    error: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = {k: body["error"].get(k) for k in ("message", "type", "param", "code")}
        error = {k: v for k, v in error.items() if v is not None}
    elif isinstance(body, dict) and isinstance(body.get("error"), str):
        error = {"message": body["error"]}
    detail = error.get("message") or response.reason_phrase or "no detail"
    return UpstreamError(
        f"Upstream {response.request.url.path} answered HTTP {status}: {detail}",
        status=status,
        error=error,
        retry_after=_retry_after(response.headers),
        provider=name,
        attempts=attempts,
    )


def _transport_error(exc: httpx.TransportError, name: str, attempts: int) -> UpstreamError:
    timed_out = isinstance(exc, httpx.TimeoutException)
    what = "did not answer in time" if timed_out else "could not be reached"
    if not timed_out and not isinstance(exc, UNSENT):
        what = "broke off the exchange"
    code = "upstream_timeout" if timed_out else "upstream_unreachable"
    return _no_answer(f"Upstream {what}: {type(exc).__name__}: {exc}", code, name, attempts)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the upstream asked to wait: ``retry-after-ms``, or ``Retry-After`` (seconds or
    an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- the plugin ----------------------------------------------------------------------------


class CustomProvider(ProviderPlugin):
    """The course's custom-provider: an OpenAI-compatible upstream (the embedded mock by
    default)."""

    name = "custom-provider"
    version = "1.0.0"
    description = "Any OpenAI-compatible API through httpx (the embedded mock by default)"
    config_model = CustomProviderConfig

    def __init__(self) -> None:
        self.config = CustomProviderConfig()
        self.provider: OpenAICompatibleProvider | None = None

    def init(self, ctx: Context, config: CustomProviderConfig) -> None:
        self.config = config

    async def start(self, ctx: Context) -> None:
        models = tuple(self.config.models)
        if self.config.api_url is None:
            server = await asyncio.to_thread(embedded_upstream)
            base_url = server.url
            models = models or tuple(server.mock.models)
        else:
            base_url = self.config.api_url
        self.provider = OpenAICompatibleProvider(self.config, base_url, models, ctx.name)
        self.provider.open()

    async def stop(self, ctx: Context) -> None:
        if self.provider is not None:
            await self.provider.close()

    async def health_check(self, ctx: Context) -> None:
        if self.provider is None:
            raise RuntimeError("custom-provider is not started")
        await self.provider.health_check()

    def get_provider(self) -> OpenAICompatibleProvider:
        if self.provider is None:
            raise RuntimeError("custom-provider is not started; load it first")
        return self.provider

    @property
    def base_url(self) -> str | None:
        """The upstream this instance talks to (the embedded one's URL when it is used)."""
        return None if self.provider is None else self.provider.base_url
