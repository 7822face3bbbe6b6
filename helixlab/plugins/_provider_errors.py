"""The one exception a provider plugin raises when its upstream LLM API fails.

It carries what the gateway needs to answer the client well: the upstream's status, the
OpenAI-shaped error body, and how long the upstream asked callers to wait. It is not a
``HelixError``: those are about the kernel and its configuration, this is about a request.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UpstreamError"]

# Upstream statuses that are the client's own doing and mean the same through the gateway.
_PASS_THROUGH = {400, 404, 408, 409, 413, 415, 422, 429}


class UpstreamError(Exception):
    """The upstream API answered with an error, or could not be reached.

    ``status`` is the upstream's HTTP error status (None when no usable response came:
    timeout, connection failure, a malformed body or a stream broken midway). ``error`` is
    the OpenAI error object (``message``, ``type``, ``param``, ``code``), taken from the
    upstream's body when it sent one.

    ``http_status`` is what a gateway should answer: client errors pass through; the
    upstream refusing *the gateway's* credentials (401/403) or failing (5xx) is a 502; no
    answer in time is a 504.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        error: dict[str, Any] | None = None,
        retry_after: float | None = None,
        provider: str = "custom-provider",
        attempts: int = 1,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.provider = provider
        self.attempts = attempts
        body = dict(error or {})
        body.setdefault("message", message)
        body.setdefault("type", _default_type(status))
        body.setdefault("param", None)
        body.setdefault("code", None)
        self.error = body

    @property
    def http_status(self) -> int:
        """The status a gateway should answer the client with."""
        if self.status is None:
            return 504 if self.error.get("code") == "upstream_timeout" else 502
        if self.status in _PASS_THROUGH:
            return self.status
        return 502

    def to_openai(self) -> dict[str, Any]:
        """The response body: ``{"error": {...}}``."""
        return {"error": dict(self.error)}

    def __repr__(self) -> str:
        return f"UpstreamError({str(self)!r}, status={self.status!r})"


def _default_type(status: int | None) -> str:
    if status == 429:
        return "rate_limit_error"
    if status is not None and 400 <= status < 500:
        return "invalid_request_error"
    return "upstream_error"
