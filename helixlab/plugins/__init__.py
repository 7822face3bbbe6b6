"""Built-in plugins, known to every kernel by name so that the course's YAML works as written.

``CATALOG`` maps a plugin name to ``"module:Class"``; a class is imported only when a
configuration names it.

=================  ===========  ==========================================================
name               kind         what it does
=================  ===========  ==========================================================
custom-logger      plugin       structured logs (text or JSON) to stdout, stderr, memory, file
custom-provider    provider     any OpenAI-compatible API (the embedded mock by default)
request-logger     middleware   method, path, status, latency per request; secrets masked
custom-auth        middleware   bearer JWTs: signature, expiry, issuer, audience, roles
rate-limiter       middleware   token bucket per client; survives hot reloads
builtin-tools      tool         a safe calculator and a clock for function calling
=================  ===========  ==========================================================

A provider that fails raises :class:`UpstreamError` (status, OpenAI error body, retry-after).
"""

from __future__ import annotations

from ..errors import UpstreamError

CATALOG: dict[str, str] = {
    "builtin-tools": "helixlab.plugins._tools:BuiltinTools",
    "custom-auth": "helixlab.plugins._auth:CustomAuth",
    "custom-logger": "helixlab.plugins._logger:CustomLogger",
    "custom-provider": "helixlab.plugins._provider:CustomProvider",
    "rate-limiter": "helixlab.plugins._ratelimit:RateLimiter",
    "request-logger": "helixlab.plugins._request_logger:RequestLogger",
}

__all__ = ["CATALOG", "UpstreamError"]
