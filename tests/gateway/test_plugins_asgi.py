"""helixlab.plugins._asgi: request identity and OpenAI-shaped errors; plus ``serving``, the
loopback server the middleware tests share."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from helixlab.plugins._asgi import (
    client_address,
    client_identity,
    key_id,
    path_matches,
    send_error,
)
from helixlab.testing import serve_asgi

#: The loopback server the middleware tests share: the toolkit's, as plugin authors use it.
serving = serve_asgi


def echo_app() -> Starlette:
    """A tiny app: ``/echo`` returns what middleware left in the scope, ``/health`` is open."""

    async def echo(request: Request) -> Response:
        body = await request.body()
        shared = request.scope.get("state", {})
        return JSONResponse(
            {
                "claims": shared.get("helixlab.claims"),
                "client": shared.get("helixlab.client"),
                "body_bytes": len(body),
            }
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/v1/chat/completions", echo, methods=["POST"]),
            Route("/health", health),
            Route("/healthz-admin", echo),
        ]
    )


def scope(headers=(), client=("10.0.0.1", 5000), path="/"):
    return {
        "type": "http",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "client": client,
    }


def test_identity_is_a_hash_of_the_bearer_token_never_the_token():
    token = "sk-very-secret-token"
    identity = client_identity(scope([("Authorization", f"Bearer {token}")]))
    assert identity == key_id(token)
    assert token not in identity and identity.startswith("key:")
    assert client_identity(scope()) == "ip:10.0.0.1"


def test_identity_stored_by_earlier_middleware_wins():
    s = scope([("authorization", "Bearer x")])
    s["state"] = {"helixlab.client": "sub:alice"}
    assert client_identity(s) == "sub:alice"


def test_forwarded_for_is_ignored_unless_trusted_and_then_read_from_the_right():
    s = scope([("X-Forwarded-For", "6.6.6.6, 192.0.2.9")])
    assert client_address(s) == "10.0.0.1"
    assert client_address(s, trust_forwarded=True) == "192.0.2.9"
    assert client_address(s, trust_forwarded=True, hops=2) == "6.6.6.6"


def test_segment_matching_does_not_let_a_lookalike_path_skip_authentication():
    assert path_matches("/health", ["/health"], segments=True)
    assert path_matches("/health/live", ["/health"], segments=True)
    assert not path_matches("/healthz-admin", ["/health"], segments=True)
    assert path_matches("/healthz-admin", ["/health"])  # the course's plain prefixes


@pytest.mark.parametrize("status", [401, 429])
def test_send_error_speaks_openai_error_shape(status):
    async def app(scope, receive, send):
        await send_error(send, status, "nope", type="t", code="c", headers={"Retry-After": "3"})

    with serving(app) as url:
        response = httpx.get(url + "/")
    assert response.status_code == status
    error = {"message": "nope", "type": "t", "param": None, "code": "c"}
    assert response.json() == {"error": error}
    assert response.headers["retry-after"] == "3"
