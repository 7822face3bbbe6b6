"""The OpenAI-compatible gateway: an ASGI app built from the kernel's live plugins.

>>> import helixlab as hx
>>> with hx.Kernel() as kernel:
...     server = kernel.serve(port=0)   # uvicorn on the kernel's loop, loopback only
...     server.openai_base_url.endswith("/v1")
True

Routes: ``POST /v1/chat/completions`` (JSON and SSE), ``GET /v1/models``, ``GET /health``,
``GET /v1/plugins``. Provider plugins answer, middleware plugins wrap the routes (the
first in load order is the outermost), tool plugins' tools can run server-side. On every
reload the whole chain is rebuilt aside and swapped in one step; requests in flight
finish on the chain they started with. Errors are always OpenAI-shaped.
"""

from ._app import Gateway
from ._build import GatewayState, build_state
from ._config import GatewayConfig, gateway_config
from ._errors import GatewayError, error_body, error_response, upstream_error
from ._routing import ProviderRoute, Router
from ._server import GatewayServer, aserve, serve
from ._stream import EventStream

__all__ = [
    "EventStream",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "GatewayServer",
    "GatewayState",
    "ProviderRoute",
    "Router",
    "aserve",
    "build_state",
    "error_body",
    "error_response",
    "gateway_config",
    "serve",
    "upstream_error",
]
