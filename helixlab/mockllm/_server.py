"""Serving the mock on loopback from a daemon thread, so a notebook cell or a test can start
it in one call and stop it without leaking threads or ports."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import uvicorn

from helixlab.llm import ToolCall

from .._net import ReadyServer, bind_tcp, http_url
from ._app import MockLLM

__all__ = ["MockServer", "start"]

_START_TIMEOUT = 10.0


class MockServer:
    """A MockLLM served on a loopback port; the knobs of the MockLLM are available here too.

    Stop it with ``stop()`` or by using it as a context manager.
    """

    def __init__(self, mock: MockLLM, host: str, port: int) -> None:
        self.mock = mock
        self.host = host
        self.port = port
        self._server: ReadyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL an OpenAI client uses, e.g. ``http://127.0.0.1:PORT/v1``."""
        return http_url(self.host, self.port) + "/v1"

    @property
    def running(self) -> bool:
        """Whether the server thread is still serving."""
        return self._thread is not None and self._thread.is_alive()

    # -- the mock's knobs --------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of every chat-completions body received, oldest first."""
        return self.mock.requests

    def script(self, replies: Iterable[str | ToolCall]) -> None:
        """Replace the scripted replies (see :meth:`MockLLM.script`)."""
        self.mock.script(replies)

    def fail_next(
        self,
        status: int = 500,
        count: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Fail the next ``count`` chat requests (see :meth:`MockLLM.fail_next`)."""
        self.mock.fail_next(status, count, retry_after, message)

    def drop_next(self, count: int = 1) -> None:
        """Drop the next ``count`` streams mid-way (see :meth:`MockLLM.drop_next`)."""
        self.mock.drop_next(count)

    def set_latency(self, seconds: float) -> None:
        """Delay each chat reply by ``seconds``."""
        self.mock.set_latency(seconds)

    def reset(self) -> None:
        """Forget requests and every knob setting (see :meth:`MockLLM.reset`)."""
        self.mock.reset()

    # -- lifecycle ---------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        ready = threading.Event()
        config = uvicorn.Config(
            self.mock,
            loop="asyncio",
            http="h11",
            lifespan="off",
            log_config=None,
            timeout_graceful_shutdown=2,
        )
        self._server = server = ReadyServer(config, ready)

        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"mockllm:{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait(_START_TIMEOUT)
        if not server.started:
            self.stop()
            sock.close()
            raise RuntimeError(f"MockLLM did not start on {self.host}:{self.port}.")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the server thread; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)

    def __enter__(self) -> MockServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<MockServer {self.url} {state}>"


def start(
    port: int = 0,
    api_key: str | None = None,
    models: Iterable[str] = ("mock-small", "mock-large"),
    latency: float = 0.0,
    script: Iterable[str | ToolCall] | None = None,
    *,
    host: str = "127.0.0.1",
    mock: MockLLM | None = None,
) -> MockServer:
    """Start a MockLLM on ``host:port`` (port 0 picks a free one) and return once it listens.

    >>> with start() as server:
    ...     server.url.startswith("http://127.0.0.1:")
    True

    Pass ``mock`` to serve an existing MockLLM (its own settings then apply).
    """
    if mock is None:
        mock = MockLLM(api_key=api_key, models=models, latency=latency, script=script)
    sock = bind_tcp(host, port)
    server = MockServer(mock, host, sock.getsockname()[1])
    server._serve(sock)
    return server
