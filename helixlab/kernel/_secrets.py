"""Secrets: which settings hold one, and masking them wherever config is shown.

A setting is secret by its name (``api_key``, ``jwt_secret``, ``password``…) or by its
type (pydantic's ``SecretStr``). Reprs, events, logs, the dashboard and ``/v1/plugins``
show ``***`` instead; free text (an error quoting a password) is scrubbed of the known
values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

__all__ = ["MASK", "SECRET_WORDS", "is_secret_key", "redact", "redact_text", "secret_values"]

SECRET_WORDS = (
    "api_key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "private_key",
    "credential",
)
MASK = "***"


_COMPACT_WORDS = tuple(w.replace("_", "") for w in SECRET_WORDS if w != "token")


def is_secret_key(key: str) -> bool:
    """Whether a setting named ``key`` holds a secret (``api_key``, ``jwt_secret``, ...).

    ``token`` must end a word, so ``access_token`` is secret but ``max_tokens`` is not.
    """
    if not isinstance(key, str):
        return False
    compact = re.sub(r"[^a-z0-9]", "", key.lower())
    if any(word in compact for word in _COMPACT_WORDS):
        return True
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)
    return any(word.lower().endswith("token") for word in words)


def redact(value: Any) -> Any:
    """A copy of ``value`` fit to display: secret-keyed values and Secret* types become ***."""
    if isinstance(value, pydantic.SecretStr | pydantic.SecretBytes):
        return MASK
    if isinstance(value, pydantic.BaseModel):
        return redact(value.model_dump())
    if isinstance(value, Mapping):
        return {
            k: MASK if v is not None and is_secret_key(k) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item) for item in value)
    return value


def secret_values(value: Any) -> set[str]:
    """Every secret value in ``value`` (what ``redact`` would mask), to scrub from free text."""
    found: set[str] = set()
    if isinstance(value, pydantic.SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, pydantic.BaseModel):
        for key in type(value).model_fields:
            item = getattr(value, key, None)
            if is_secret_key(key) and isinstance(item, str):
                found.add(item)
            found |= secret_values(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if is_secret_key(key) and isinstance(item, str):
                found.add(item)
            found |= secret_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secret_values(item)
    return {s for s in found if len(s) >= 4}


def redact_text(text: str, secrets: Iterable[Any]) -> str:
    """``text`` with every known secret value (4+ characters) replaced by ***."""
    values = set()
    for secret in secrets:
        if isinstance(secret, pydantic.SecretStr):
            secret = secret.get_secret_value()
        if isinstance(secret, str) and len(secret) >= 4:
            values.add(secret)
    if not values:
        return text
    pattern = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.sub(pattern, MASK, text)
