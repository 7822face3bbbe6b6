"""The OpenAI error body, ``{"error": {"message", "type", "param", "code"}}``.

The gateway, the built-in middleware and the embedded upstream all answer errors in this
shape, so that every client (the official ``openai`` package first) turns a refusal into
its typed exception rather than a parse error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ERROR_TYPES", "error_body", "error_type"]

#: The ``type`` OpenAI uses for each status (the openai client keys its classes on status).
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    """The OpenAI error ``type`` for an HTTP status."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """``{"error": {...}}`` for ``status``; ``type`` defaults to OpenAI's for the status."""
    return {
        "error": {
            "message": message,
            "type": type or error_type(status),
            "param": param,
            "code": code,
        }
    }
