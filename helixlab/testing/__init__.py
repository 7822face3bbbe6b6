"""A testing toolkit for plugin authors, and a pytest plugin (its fixtures need no import).

Fixtures (from the ``pytest11`` entry point, see :mod:`helixlab.testing.plugin`):
``make_helix_kernel``, ``helix_kernel``, ``gateway`` and ``mock_llm``. Helpers:

- :func:`call_middleware`: one request through a middleware factory (or a
  MiddlewarePlugin), with a fake next app that records what reached it;
- :func:`serve_asgi`: any ASGI app on a loopback port, for real HTTP;
- :class:`ServedGateway`: what the ``gateway`` fixture yields, usable without pytest.
"""

from ._asgi import Downstream, MiddlewareCall, acall_middleware, call_middleware, serve_asgi
from ._gateway import ServedGateway

__all__ = [
    "Downstream",
    "MiddlewareCall",
    "ServedGateway",
    "acall_middleware",
    "call_middleware",
    "serve_asgi",
]
