"""``custom-auth``: bearer JWTs checked for signature, expiry, issuer, audience and roles.

.. code-block:: yaml

    custom-auth:
      config:
        issuer: https://auth.example.com/
        audience: helix-gateway
        public_key_url: https://auth.example.com/.well-known/jwks.json   # or public_key / secret
        allowed_roles: [admin, developer]      # empty: any valid token
        roles_claim: roles                     # dotted paths work: realm_access.roles

One key source: ``secret`` (HMAC, at least 32 bytes), ``public_key`` (PEM) or
``public_key_url`` (a JWKS document). ``algorithms`` is an explicit allow-list that never
includes ``none``, and HMAC is refused when the key is asymmetric, so a token "signed"
with the public key as an HMAC secret (algorithm confusion) is rejected. With no key at
all, every request outside ``skip_paths`` is refused (and the health check says why):
authentication fails closed. The plugin is ``required``: while it is not serving (failed
at load or start, a start that hung past its timeout, stopped), the gateway answers every
request 503 naming it and the phase, never without authentication. A JWKS document that
cannot be used (not JSON, no ``keys`` list, no usable key) is reported with why, each
skipped key by its index and ``kid``; the keys of the last good document stay in use.

JWKS keys are fetched with httpx (never blocking the event loop), cached by ``kid``,
refreshed after ``jwks_cache_ttl``, and refetched when a token names an unknown ``kid`` —
at most once per ``jwks_refetch_interval``, so a stream of made-up ``kid``\\ s cannot turn
the gateway into a load generator against the key server.

A missing or invalid token is a 401 with ``WWW-Authenticate: Bearer``; a valid token
without an allowed role is a 403; both in OpenAI's error shape. The claims are stored in
``scope["state"]["helixlab.claims"]`` for later middleware and providers, and the subject
as ``scope["state"]["helixlab.client"] = "sub:<sub>"``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import Field, SecretStr, field_validator, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from helixlab.errors import describe
from helixlab.kernel import Context, Duration, MiddlewarePlugin, PluginConfig

from ._asgi import CLAIMS, CLIENT, bearer_token, path_matches, send_error, state
from ._transport import async_client

__all__ = ["AuthMiddleware", "CustomAuth", "CustomAuthConfig", "JWKSCache"]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")
OKP_ALGORITHMS = ("EdDSA",)
ASYMMETRIC_ALGORITHMS = frozenset({*RSA_ALGORITHMS, *EC_ALGORITHMS, *OKP_ALGORITHMS})
_MIN_SECRET_BYTES = 32
_REALM = 'Bearer realm="helixlab"'
_log = logging.getLogger("helixlab.plugins.custom-auth")


class CustomAuthConfig(PluginConfig):
    """Which tokens are valid, and which roles may pass."""

    issuer: str | None = None
    audience: str | list[str] | None = None
    secret: SecretStr | None = None
    public_key: str | None = None
    public_key_url: str | None = None
    algorithms: list[str] | None = None
    allowed_roles: list[str] = Field(default_factory=list)
    roles_claim: str = Field(default="roles", min_length=1)
    required_claims: list[str] = Field(default_factory=lambda: ["exp"])
    skip_paths: list[str] = Field(default_factory=lambda: ["/health"])
    leeway: Duration = 0.0
    jwks_cache_ttl: Duration = 300.0
    jwks_refetch_interval: Duration = 30.0
    jwks_timeout: Duration = 5.0

    @field_validator("public_key_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(
                "public_key_url must be https (plain http only for localhost), or anyone on "
                "the path could substitute their own keys"
            )
        return url

    @model_validator(mode="after")
    def _check_keys(self) -> CustomAuthConfig:
        # Checked here rather than in a field validator so that an error never echoes the
        # value: someone may paste a private key where the public one goes.
        if self.public_key is not None:
            if "PRIVATE KEY" in self.public_key:
                raise ValueError(
                    "public_key holds a private key; give the gateway only the public key"
                )
            try:
                load_pem_public_key(self.public_key.encode())
            except (ValueError, TypeError):
                raise ValueError("public_key is not a PEM public key") from None
        sources = [n for n in ("secret", "public_key", "public_key_url") if getattr(self, n)]
        if len(sources) > 1:
            raise ValueError(
                f"give one key source, not {' and '.join(sources)}: secret (HMAC), public_key "
                f"(PEM) or public_key_url (JWKS)"
            )
        if self.secret is not None and len(self.secret.get_secret_value()) < _MIN_SECRET_BYTES:
            raise ValueError(f"secret must be at least {_MIN_SECRET_BYTES} characters for HMAC")
        if self.algorithms is None:
            return self
        known = jwt.algorithms.get_default_algorithms()
        for name in self.algorithms:
            if name.lower() == "none":
                raise ValueError("algorithms must not include 'none' (unsigned tokens)")
            if name not in known:
                raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(known)}")
        if not self.algorithms:
            raise ValueError("algorithms must list at least one algorithm")
        hmac = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
        if hmac and (self.public_key or self.public_key_url):
            raise ValueError(
                f"{', '.join(hmac)} cannot be used with a public key: a token signed with the "
                f"public key as an HMAC secret would pass (algorithm confusion)"
            )
        if self.secret is not None and len(hmac) != len(self.algorithms):
            raise ValueError("a secret verifies only HMAC algorithms (HS256, HS384, HS512)")
        return self


def _default_algorithms(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EC_ALGORITHMS
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return OKP_ALGORITHMS
    return ()


class InvalidToken(Exception):
    """A token was refused; the message is safe to show the client."""


class JWKSCache:
    """Signing keys from a JWKS URL, by ``kid``; fetched without blocking the loop.

    ``clock`` (monotonic seconds) is injectable for tests; ``fetches`` counts fetch attempts.
    """

    def __init__(
        self,
        url: str,
        *,
        algorithms: tuple[str, ...] | None,
        ttl: float,
        refetch_interval: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithms = algorithms
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self.clock = clock
        self.keys: dict[str | None, tuple[Any, tuple[str, ...]]] = {}
        self.fetches = 0
        self.last_error: str | None = None
        self.problems: list[str] = []  # keys of the last document that were skipped, and why
        self._fetched_at: float | None = None  # last attempt
        self._loaded_at: float | None = None  # last success
        self._locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def may_fetch(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at >= self.refetch_interval

    async def key_for(self, kid: str | None) -> tuple[Any, tuple[str, ...]] | None:
        """The key (and its algorithms) for ``kid``, refetching once if it is unknown or stale."""
        stale = self._loaded_at is None or self.clock() - self._loaded_at >= self.ttl
        known = self._pick(kid)
        if (known is None or stale) and self.may_fetch():
            await self.refresh()
            known = self._pick(kid)
        return known

    def _pick(self, kid: str | None) -> tuple[Any, tuple[str, ...]] | None:
        if kid is not None:
            return self.keys.get(kid)
        return next(iter(self.keys.values())) if len(self.keys) == 1 else None

    async def refresh(self) -> None:
        """Fetch the key set (one fetch at a time; callers waiting share its result)."""
        seen = self.fetches
        async with self._lock():
            if self.fetches != seen:
                return  # another request fetched while this one waited: share its result
            self._fetched_at = self.clock()
            self.fetches += 1
            try:
                async with asyncio.timeout(self.timeout):  # the whole fetch, not each read
                    async with async_client(timeout=self.timeout) as client:
                        response = await client.get(self.url)
                response.raise_for_status()
                self.keys = self._parse(response.json())
                self._loaded_at = self.clock()
                self.last_error = None
                if self.problems:
                    _log.warning(
                        "custom-auth skipped keys of %s: %s", self.url, "; ".join(self.problems)
                    )
            except TimeoutError:
                self.last_error = f"the key server did not send its keys within {self.timeout:g}s"
            except httpx.HTTPError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            except ValueError as exc:  # not JSON, or no usable key: the reason, said once
                self.last_error = f"malformed JWKS document from {self.url}: {exc}"
            except Exception as exc:  # never a reason for start() or a request to crash
                self.last_error = f"malformed JWKS document from {self.url}: {describe(exc)}"

    def _parse(self, document: Any) -> dict[str | None, tuple[Any, tuple[str, ...]]]:
        """The usable signing keys of a JWKS document, by ``kid``.

        A key that cannot be used (not an object, a ``kid`` or ``alg`` that is not a
        string, a shared secret, a key PyJWT cannot read, a repeated ``kid``) is skipped and
        named in ``problems``; a document with no usable key at all is a ValueError saying
        why, never any other exception.
        """
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("the JWKS document is not a JSON object with a 'keys' list")
        keys: dict[str | None, tuple[Any, tuple[str, ...]]] = {}
        problems: list[str] = []
        for index, jwk in enumerate(document["keys"]):
            problem = self._add_key(keys, index, jwk)
            if problem:
                problems.append(problem)
        self.problems = problems
        if not keys:
            why = "; ".join(problems[:5]) or "it lists no key"
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ValueError(f"the JWKS document has no usable signing key: {why}{more}")
        return keys

    def _add_key(
        self, keys: dict[str | None, tuple[Any, tuple[str, ...]]], index: int, jwk: Any
    ) -> str | None:
        """Add key ``index`` of the document to ``keys``; what is wrong with it, if anything."""
        where = f"key {index}"
        if not isinstance(jwk, dict):
            return f"{where} is {type(jwk).__name__}, not an object"
        kid, alg, use = jwk.get("kid"), jwk.get("alg"), jwk.get("use", "sig")
        for field, value in (("kid", kid), ("alg", alg)):
            if value is not None and not isinstance(value, str):
                return f"{where}: {field!r} must be a string, not {type(value).__name__}"
        if kid is not None:
            where = f"key {index} (kid {kid[:40]!r})"
        if use != "sig":
            return None  # an encryption key: not for signatures, nothing wrong with it
        if jwk.get("kty") == "oct":
            return f"{where} is a shared secret (kty 'oct'), which a public key set never holds"
        try:
            key = jwt.PyJWK(jwk).key
        except Exception as exc:  # whatever a crafted key makes PyJWT raise
            return f"{where} is not a usable key ({describe(exc)})"
        algorithms = (alg,) if alg else _default_algorithms(key)
        if self.algorithms is not None:
            algorithms = tuple(a for a in algorithms if a in self.algorithms)
        algorithms = tuple(a for a in algorithms if a in ASYMMETRIC_ALGORITHMS)
        if not algorithms:
            return f"{where} allows no accepted asymmetric algorithm"
        if kid in keys:
            return f"{where} repeats a kid already listed; the first is used"
        keys[kid] = (key, algorithms)
        return None


class CustomAuth(MiddlewarePlugin):
    """Bearer-JWT authentication with role checks (the course's Module 4.2)."""

    name = "custom-auth"
    version = "1.0.0"
    description = "Bearer JWT authentication: signature, expiry, issuer, audience and roles"
    config_model = CustomAuthConfig
    required = True  # while it is not serving, the gateway answers 503, never unguarded

    def __init__(self) -> None:
        self.config = CustomAuthConfig()
        self.jwks: JWKSCache | None = None
        self._static: tuple[Any, tuple[str, ...]] | None = None

    def init(self, ctx: Context, config: CustomAuthConfig) -> None:
        self.config = config
        configured = tuple(config.algorithms) if config.algorithms else None
        if config.secret is not None:
            key = config.secret.get_secret_value().encode()
            self._static = (key, configured or ("HS256",))
        elif config.public_key is not None:
            public = load_pem_public_key(config.public_key.encode())
            self._static = (public, configured or _default_algorithms(public))
        elif config.public_key_url is not None:
            self.jwks = JWKSCache(
                config.public_key_url,
                algorithms=configured,
                ttl=config.jwks_cache_ttl,
                refetch_interval=config.jwks_refetch_interval,
                timeout=config.jwks_timeout,
            )

    async def start(self, ctx: Context) -> None:
        if self.jwks is not None:
            await self.jwks.refresh()
            if self.jwks.last_error:
                ctx.logger.warning(
                    "custom-auth could not fetch its JWKS yet (%s); tokens are refused until "
                    "it can",
                    self.jwks.last_error,
                )
        elif self._static is None:
            ctx.logger.warning("custom-auth has no key configured: every request is refused")

    def health_check(self, ctx: Context) -> str | None:
        if self.jwks is not None:
            if not self.jwks.keys:
                return f"no signing keys from {self.jwks.url}: {self.jwks.last_error or 'empty'}"
            return None
        if self._static is None:
            return "no key configured (secret, public_key or public_key_url): all refused"
        return None

    def get_middleware(self) -> Any:
        return lambda app: AuthMiddleware(app, plugin=self)

    async def authenticate(self, token: str) -> dict[str, Any]:
        """The token's claims, or InvalidToken with a reason safe to show the client."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise InvalidToken("The bearer token is not a well-formed JWT.") from None
        except jwt.InvalidTokenError as exc:  # a non-string kid, a malformed crit...
            raise InvalidToken(f"The token's header is invalid: {exc}.") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise InvalidToken("The token's header has no algorithm ('alg').")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("The token's header is invalid: 'kid' must be a string.")
        if self.jwks is not None:
            found = await self.jwks.key_for(kid)
            if found is None:
                raise InvalidToken("The token's signing key (kid) is not known.")
        elif self._static is not None:
            found = self._static
        else:
            raise InvalidToken("Authentication is not configured; no token can be accepted.")
        key, algorithms = found
        if alg not in algorithms:
            raise InvalidToken(f"Tokens signed with {alg!r} are not accepted.")
        config = self.config
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options={"require": list(config.required_claims)},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("The token is not valid yet.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The token's issuer is not accepted.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The token's audience is not accepted.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The token lacks the required claim {exc.claim!r}.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The token's signature is invalid.") from None
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError):
            # anything else a crafted token makes PyJWT or the key raise: refused, never a 500
            raise InvalidToken("The token is invalid.") from None

    def roles_of(self, claims: dict[str, Any]) -> set[str]:
        """The roles a token grants, from ``roles_claim`` (a list or a space-separated string)."""
        value: Any = claims
        for part in self.config.roles_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            return set(value.split())
        if isinstance(value, list | tuple):
            return {str(role) for role in value}
        return set()

    def allows(self, claims: dict[str, Any]) -> bool:
        """Whether the token grants one of ``allowed_roles`` (any token, if none are set)."""
        allowed = self.config.allowed_roles
        return not allowed or bool(self.roles_of(claims) & set(allowed))


class AuthMiddleware:
    """Pure ASGI: refuses the request, or stores its claims in the scope and passes it on."""

    def __init__(self, app: ASGIApp, *, plugin: CustomAuth) -> None:
        self.app = app
        self.plugin = plugin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or path_matches(
            scope["path"], self.plugin.config.skip_paths, segments=True
        ):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            await send_error(
                send,
                401,
                "Missing bearer token: send 'Authorization: Bearer <JWT>'.",
                type="authentication_error",
                code="missing_token",
                headers={"WWW-Authenticate": _REALM},
            )
            return
        try:
            claims = await self.plugin.authenticate(token)
        except Exception as exc:  # a token is never a reason for a 500 or a traceback
            if not isinstance(exc, InvalidToken):
                _log.warning("custom-auth refused a token it could not read (%s)", describe(exc))
            reason = str(exc) if isinstance(exc, InvalidToken) else "The token is invalid."
            await send_error(
                send,
                401,
                reason,
                type="authentication_error",
                code="invalid_token",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            )
            return
        if not self.plugin.allows(claims):
            allowed = ", ".join(self.plugin.config.allowed_roles)
            await send_error(
                send,
                403,
                f"The token does not grant any of the roles this gateway requires ({allowed}).",
                type="permission_error",
                code="insufficient_role",
                headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope"'},
            )
            return
        shared = state(scope)
        shared[CLAIMS] = claims
        if isinstance(claims.get("sub"), str) and claims["sub"]:
            shared[CLIENT] = "sub:" + claims["sub"]
        await self.app(scope, receive, send)
