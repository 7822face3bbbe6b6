"""Errors in the OpenAI shape, so that every client (the official ``openai`` package first)
turns a gateway refusal into its typed exception instead of a parse error.

Every error body is ``{"error": {"message", "type", "param", "code"}}``. Handlers raise
:class:`GatewayError`; middleware plugins answer with :func:`error_response`, which is a
Starlette response and therefore an ASGI app: ``await error_response(401, "...")(scope,
receive, send)``. :func:`upstream_error` maps whatever a provider raised to the status a
client should see, without leaking a traceback or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from ..errors import UpstreamError, describe
from ..kernel import mask
from ..llm import error_body

__all__ = ["GatewayError", "error_body", "error_response", "upstream_error"]


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in the OpenAI shape (also usable as an ASGI app by middleware)."""
    body = error_body(status, mask(message), type=type, param=param, code=code)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


class GatewayError(Exception):
    """A request the gateway refuses or cannot serve, with the status and OpenAI error fields.

    ``body`` overrides the generated body when an upstream already sent an OpenAI-shaped one.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self._body = dict(body) if body is not None else None

    @property
    def body(self) -> dict[str, Any]:
        """The error body, secrets masked (an upstream's words may quote the gateway's key)."""
        if self._body is not None:
            return mask(self._body)
        return mask(
            error_body(self.status, self.message, type=self.type, param=self.param, code=self.code)
        )

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def upstream_error(exc: BaseException, provider: str) -> GatewayError:
    """What a client sees when provider ``provider`` raised ``exc``.

    An exception with an int ``status`` (4xx/5xx) keeps that status, and its ``body`` when
    that is already an OpenAI error object, and a ``Retry-After`` from its ``headers`` or
    ``retry_after``; anything else is a 502 naming the provider and the error in one line.
    """
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, UpstreamError):  # the provider already knows what the client should see
        headers: dict[str, str] = (
            {} if exc.retry_after is None else {"Retry-After": f"{exc.retry_after:g}"}
        )
        message = str(exc.error.get("message") or exc)
        if exc.http_status == exc.status:  # the client's own mistake: the upstream's words
            return GatewayError(exc.status, message, headers=headers, body=exc.to_openai())
        # the upstream failed, or refused the gateway's own key: not the client's doing
        upstream = f"answered {exc.status}" if exc.status else "did not answer"
        return GatewayError(
            exc.http_status,
            f"Provider {provider!r}: the upstream {upstream}: {message}",
            type="server_error",
            code="upstream_timeout" if exc.http_status == 504 else "upstream_error",
            headers=headers,
        )
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        body = getattr(exc, "body", None)
        if not (isinstance(body, Mapping) and isinstance(body.get("error"), Mapping)):
            body = None
        headers = {}
        retry = _retry_after(exc)
        if retry is not None:
            headers["Retry-After"] = retry
        message = str(body["error"].get("message")) if body else (str(exc) or describe(exc))
        return GatewayError(status, message, headers=headers, body=body)
    return GatewayError(
        502,
        f"Provider {provider!r} failed: {describe(exc)}",
        type="server_error",
        code="upstream_error",
    )


def _retry_after(exc: BaseException) -> str | None:
    headers = getattr(exc, "headers", None)
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if str(key).lower() == "retry-after":
                return str(value)
    retry = getattr(exc, "retry_after", None)
    if isinstance(retry, int | float) and not isinstance(retry, bool):
        return f"{retry:g}"
    return None
