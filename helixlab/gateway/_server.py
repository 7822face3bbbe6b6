"""Serving the gateway with uvicorn on the kernel's own loop.

The server runs as a task on the kernel's loop (the loop that runs every lifecycle
coroutine), so a request, a plugin's ``start`` and a reload's drain all share one loop
and no lock crosses threads. The socket is bound here, before uvicorn starts, so that
port 0 works and the URL is known at once; ``serve`` returns when uvicorn signals
(an event, not polling) that it listens. Stopping is graceful: open streams get
``graceful_timeout`` seconds to finish. Closing the kernel stops its servers first.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref
from typing import Any

import uvicorn

from .._net import ReadyServer, bind_tcp, http_parser, http_url
from ..kernel import mask_log_records
from ._admin import AdminApp
from ._app import Gateway
from ._build import make_builder
from ._canary import make_verifier
from ._config import GatewayConfig, gateway_config
from ._endpoints import make_app
from ._operations import Operations

__all__ = ["GatewayServer", "aserve", "serve"]

BUILDER_KEY = "gateway"

# Servers per kernel: the "gateway" builder is registered with the first and removed with
# the last, so a kernel without a server does no gateway work on reload.
_registry_lock = threading.Lock()
_servers: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


class GatewayServer:
    """A running gateway: ``url``, ``openai_base_url``, ``stop()``; a context manager.

    >>> import helixlab as hx
    >>> with hx.Kernel() as kernel, kernel.serve() as server:
    ...     server.openai_base_url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(
        self,
        kernel: Any,
        config: GatewayConfig,
        sock: socket.socket,
        operations: Operations | None = None,
        http: str = "auto",
    ):
        self.kernel = kernel
        #: the HTTP implementation serving: "httptools" or "h11" (``serve(http=...)``)
        self.http = http_parser(http)
        self.config = config
        self.host = config.host
        self.port: int = sock.getsockname()[1]
        self.operations = operations or Operations(kernel)
        key = config.admin_key.get_secret_value() if config.admin_key else ""
        self.admin = AdminApp(self.operations, key) if key else None
        self.gateway = Gateway(kernel, config, self.admin)
        self.app: Any = self.gateway  # what uvicorn runs (``wrap=`` may put a layer around it)
        self._remove_verifier: Any = None
        self._sock = sock
        self._uvicorn: ReadyServer | None = None
        self._task: asyncio.Task | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:PORT`` (``/health`` lives here)."""
        return http_url(self.host, self.port)

    @property
    def openai_base_url(self) -> str:
        """What to give an OpenAI client as ``base_url``: ``url + "/v1"``."""
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- builder registration (per kernel) ---------------------------------------------

    def _register(self) -> None:
        self._remove_verifier = self.kernel.add_verifier(
            f"canary-{id(self)}", make_verifier(self.kernel, self.config)
        )
        with _registry_lock:
            entry = _servers.get(self.kernel)
            if entry is not None:
                entry["servers"].add(self)
                return
        builder = make_builder(make_app())
        remove = self.kernel.add_builder(BUILDER_KEY, builder)  # builds now: may raise
        with _registry_lock:
            _servers[self.kernel] = {"remove": remove, "servers": {self}}

    def _unregister(self) -> None:
        if self._remove_verifier is not None:
            self._remove_verifier()
            self._remove_verifier = None
        with _registry_lock:
            entry = _servers.get(self.kernel)
            if entry is None or self not in entry["servers"]:
                return
            entry["servers"].discard(self)
            if entry["servers"]:
                return
            del _servers[self.kernel]
        entry["remove"]()

    # -- on the kernel loop ---------------------------------------------------------------

    async def _astart(self) -> None:
        mask_log_records()  # a process that serves masks every log line (uvicorn's, httpx's)
        ready = asyncio.Event()
        config = uvicorn.Config(
            self.app,
            http=self.http,
            lifespan="off",
            log_config=None,
            access_log=False,
            # uvicorn would take X-Forwarded-For from any loopback peer as the client's
            # address; the gateway reads it only from its forwarded_allow_ips (_forwarded)
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, round(self.config.graceful_timeout)),
        )
        self._uvicorn = server = ReadyServer(config, ready)
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[self._sock]))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not server.started:
            self._stopped = True
            if self._task.done() and self._task.exception() is not None:
                raise RuntimeError(f"The gateway did not start on {self.url}.") from (
                    self._task.exception()
                )
            raise RuntimeError(f"The gateway did not start on {self.url}.")
        self.kernel.add_closer(self._astop)

    async def _astop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.gateway.stopping = True  # /readyz answers 503 to probes on open connections
        server, task = self._uvicorn, self._task
        if self.admin is not None:
            self.admin.close()  # event streams end, so the graceful stop need not wait
        try:
            if server is not None and task is not None and not task.done():
                server.should_exit = True
                try:
                    await asyncio.wait_for(asyncio.shield(task), self.config.graceful_timeout + 5)
                except TimeoutError:
                    server.force_exit = True
                    await task
        finally:
            self.app.errors.flush()  # the totals of repeated tracebacks not yet logged
            self._unregister()

    # -- public --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop accepting, let open requests finish (up to ``graceful_timeout``), then stop.

        Safe to call twice, and after the kernel was closed.
        """
        if self._stopped or not self.kernel.running:
            self._stopped = True
            return
        self.kernel.run(self._astop())

    async def astop(self) -> None:
        """Async twin of :meth:`stop`."""
        if self._stopped or not self.kernel.running:
            self._stopped = True
            return
        await self.kernel.arun(self._astop())

    def __enter__(self) -> GatewayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> GatewayServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    def __repr__(self) -> str:
        return f"<GatewayServer {self.url} {'running' if self.running else 'stopped'}>"


def _prepare(kernel: Any, host: str, port: int, options: dict[str, Any]) -> GatewayServer:
    sock: socket.socket | None = options.pop("sock", None)
    operations = options.pop("operations", None)
    wrap = options.pop("wrap", None)  # outermost ASGI middleware (a fleet's /metrics)
    http = http_parser(options.pop("http", "auto"))  # before anything is bound
    if sock is not None:  # bound by the caller (``helixlab serve`` binds before loading)
        host, port = sock.getsockname()[:2]
    config = gateway_config(options.pop("config", None), **options, host=host, port=port)
    sock = sock or bind_tcp(config.host, config.port)
    server = GatewayServer(kernel, config, sock, operations, http)
    if wrap is not None:
        server.app = wrap(server.app)
    return server


def serve(kernel: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> GatewayServer:
    """Serve the OpenAI-compatible gateway of ``kernel`` on ``host:port`` (0: a free port).

    ``options`` are :class:`GatewayConfig` fields (``max_body_bytes``, ``execute_tools``,
    ``max_tool_rounds``, ``graceful_timeout``, ``admin_key``, ``verify``), or ``config=`` a
    GatewayConfig; ``sock=`` a socket already bound, ``operations=`` what the admin API
    runs (an :class:`Operations` knowing the configuration file), ``wrap=`` an outermost
    middleware, ``http=`` the HTTP implementation (``"httptools"``, ``"h11"``, or
    ``"auto"``: httptools when installed). The loop is the kernel's (``Kernel(loop=...)``).
    Returns once the server listens. Call from any thread but the kernel's
    (there: ``aserve``).
    """
    server = _prepare(kernel, host, port, options)
    try:
        server._register()
        kernel.run(server._astart())
    except BaseException:
        server._unregister()
        server._sock.close()
        raise
    return server


async def aserve(
    kernel: Any, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> GatewayServer:
    """Async twin of :func:`serve`, usable from any loop, the kernel's included."""
    server = _prepare(kernel, host, port, options)
    try:
        await asyncio.to_thread(server._register)
        await kernel.arun(server._astart())
    except BaseException:
        server._unregister()
        server._sock.close()
        raise
    return server
