"""What the built-in middleware shares: reading an ASGI request, and answering with an error.

Middleware here is pure ASGI (no ``BaseHTTPMiddleware``), so these helpers work on the raw
``scope`` and ``send``. Identity and claims travel in ``scope["state"]``:

- ``scope["state"]["helixlab.claims"]``: the validated JWT claims (set by custom-auth);
- ``scope["state"]["helixlab.client"]``: who is calling, as a string such as
  ``"sub:alice"``, ``"key:3f2a…"`` (a hash of the bearer token, never the token) or
  ``"ip:10.0.0.7"``.

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so the
official ``openai`` client raises its typed exceptions for them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from starlette.types import Scope, Send

from ..llm import error_body

__all__ = [
    "CLAIMS",
    "CLIENT",
    "bearer_token",
    "client_address",
    "client_identity",
    "header",
    "key_id",
    "path_matches",
    "send_error",
    "state",
]

CLAIMS = "helixlab.claims"
CLIENT = "helixlab.client"


def state(scope: Scope) -> MutableMapping[str, Any]:
    """The request's shared state dict (Starlette's ``request.state`` reads the same one)."""
    return scope.setdefault("state", {})


def header(scope: Scope, name: str) -> str | None:
    """The first value of request header ``name`` (case-insensitive), decoded as latin-1."""
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    value = header(scope, "authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def key_id(token: str) -> str:
    """A stable, non-reversible name for an API key, fit for logs and bucket keys."""
    return "key:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def client_address(scope: Scope, *, trust_forwarded: bool = False, hops: int = 1) -> str:
    """The caller's address: the peer, or, behind ``hops`` trusted proxies, X-Forwarded-For.

    Each proxy appends the address it received from, so the entry ``hops`` from the right
    is the one the nearest trusted proxy saw; entries further left are whatever the client
    claimed and are never used.
    """
    if trust_forwarded:
        forwarded = header(scope, "x-forwarded-for")
        if forwarded:
            entries = [part.strip() for part in forwarded.split(",") if part.strip()]
            if entries:
                return entries[-min(hops, len(entries))]
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def client_identity(scope: Scope, *, trust_forwarded: bool = False, hops: int = 1) -> str:
    """Who is calling: the identity earlier middleware stored, an API key hash, or an address."""
    known = scope.get("state", {}).get(CLIENT)
    if isinstance(known, str) and known:
        return known
    token = bearer_token(scope)
    if token:
        return key_id(token)
    return "ip:" + client_address(scope, trust_forwarded=trust_forwarded, hops=hops)


def path_matches(path: str, prefixes: Iterable[str], *, segments: bool = False) -> bool:
    """Whether ``path`` starts with one of ``prefixes``.

    With ``segments``, a prefix matches whole path segments only (``/health`` matches
    ``/health`` and ``/health/live`` but not ``/healthz``): the safe reading for skipping
    authentication.
    """
    for prefix in prefixes:
        if not prefix:
            continue
        if not segments:
            if path.startswith(prefix):
                return True
            continue
        base = prefix.rstrip("/")
        if path in (prefix, base) or path.startswith(base + "/"):
            return True
    return False


async def send_error(
    send: Send,
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer the request with an OpenAI-shaped JSON error (pure ASGI, no Response object)."""
    body = json.dumps(error_body(status, message, type=type, param=param, code=code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
