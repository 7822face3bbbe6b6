"""``rate-limiter``: a token bucket per client, whose buckets survive hot reloads.

.. code-block:: yaml

    rate-limiter:
      config:
        requests_per_minute: 100     # the refill rate
        burst_size: 20               # the bucket's capacity
        trust_forwarded: false       # true only behind a proxy you run (see below)
        api_keys: [${KEY_A}, ${KEY_B}]   # optional: keys that count as verified identities
        max_keys_per_address: 16     # identities one address may hold buckets for

A client is keyed on a *verified* identity only, so that inventing credentials is no way
around the limit: the identity custom-auth established from a valid token (``sub:<sub>``,
or a hash of the token when it has no ``sub``), else a bearer token found in the
configured ``api_keys`` (keyed by a hash of it, never the key itself), else the client's
address — also for every bearer token nobody verified. One address holds buckets for at
most ``max_keys_per_address`` identities (one whose bucket expired frees its place; a new
one beyond that shares the address's bucket), so a single client cannot multiply its
buckets either. Put custom-auth before the limiter (a higher ``priority``, or
``depends_on``) for its claims to count; otherwise tokens are judged by ``api_keys``.

Behind a reverse proxy, set the gateway's ``forwarded_allow_ips`` to the proxy's address:
the gateway then gives every plugin the real client's address (read from the right of
the proxy's ``X-Forwarded-For`` or ``Forwarded``, only on connections from that proxy),
and the per-address buckets are per client again. The limiter's own ``trust_forwarded:
true`` reads ``X-Forwarded-For`` from any peer (the entry ``forwarded_hops`` from the
right): only for a gateway nothing but the proxy can reach.

Every response carries ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``
and ``x-ratelimit-reset-requests``; a refused request gets a 429 in OpenAI's shape with
``Retry-After`` (whole seconds, rounded up).

The buckets live in a :class:`BucketStore` that a reload hands from the old instance to
the new one *by reference*: requests the old instance serves while the new one starts
spend tokens from the same buckets, so a reload is never a way around the limit. A new
``requests_per_minute`` or ``burst_size`` re-caps existing buckets instead of refilling
them. Memory is bounded: a bucket that has been full for longer than a refill period is
dropped (a new one would be identical), and beyond ``max_clients`` the least recently
used bucket goes.
"""

from __future__ import annotations

import copy
import inspect
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helixlab.kernel import Context, MiddlewarePlugin, PluginConfig

from ._asgi import (
    CLAIMS,
    CLIENT,
    bearer_token,
    client_address,
    key_id,
    path_matches,
    send_error,
    state,
)

__all__ = [
    "BucketStore",
    "Decision",
    "RateLimitMiddleware",
    "RateLimiter",
    "RateLimiterConfig",
    "use_store",
]

# Where new limiters keep their buckets (a fleet puts them in Redis); None: in this process.
_store_factory: Callable[[Any], Any] | None = None


def use_store(factory: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """Make new rate limiters keep buckets in ``factory(config)``'s store; returns the old one.

    The store has BucketStore's ``acquire`` (which may be async), ``reshape`` and
    ``capacity``; a ``health()`` that raises shows in the plugin's health check.
    """
    global _store_factory
    previous, _store_factory = _store_factory, factory
    return previous


class RateLimiterConfig(PluginConfig):
    """The bucket shape, how clients are told apart, and how many are remembered."""

    requests_per_minute: float = Field(default=60, gt=0)
    burst_size: int = Field(default=10, ge=1)
    trust_forwarded: bool = False
    forwarded_hops: int = Field(default=1, ge=1)
    max_clients: int = Field(default=10_000, ge=1)
    skip_paths: list[str] = Field(default_factory=list)
    api_keys: list[str] = Field(default_factory=list)
    max_keys_per_address: int = Field(default=16, ge=1)


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Decision:
    """The outcome for one request: allowed or not, and what the headers say."""

    allowed: bool
    limit: float
    remaining: int
    reset: float  # seconds until the bucket is full again
    retry_after: float  # seconds until one token is available (0 when allowed)


class BucketStore:
    """Token buckets by client key; thread-safe, with no await inside its lock.

    ``clock`` returns monotonic seconds and is injectable, so tests move time instead of
    sleeping. ``requests_per_minute`` (the refill rate) and ``capacity`` are the current
    settings; a reload with new settings changes them here, and every bucket follows.
    """

    def __init__(
        self,
        requests_per_minute: float,
        capacity: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.capacity = capacity
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()
        self._last_sweep: float | None = None

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.requests_per_minute / 60

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def view(self) -> BucketStore:
        """A store on the same buckets (and lock) with settings of its own.

        What a reload hands over: the new instance may ``reshape`` its view, and the old
        one, should the reload roll back, keeps its own limits. (A deep copy of a store is
        such a view too, so the kernel's copy of handed-over state keeps the buckets shared.)
        """
        view = copy.copy(self)
        return view

    def __deepcopy__(self, memo: dict) -> BucketStore:
        return self.view()

    def reshape(self, requests_per_minute: float, capacity: int, max_clients: int) -> None:
        """Adopt new settings; buckets above the new capacity are cut down to it, not refilled.

        Only this view's settings change; the shared buckets are capped as this view next
        refills them, so another view (the old instance) is left as it was.
        """
        with self._lock:
            now = self.clock()
            for bucket in self._buckets.values():
                self._refill(bucket, now)
            self.requests_per_minute = requests_per_minute
            self.capacity, self.max_clients = capacity, max_clients

    def acquire(self, key: str) -> Decision:
        """Take one token from ``key``'s bucket if there is one."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                self._sweep(now)
                bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
                self._evict()
            else:
                self._buckets.move_to_end(key)
                self._refill(bucket, now)
            allowed = bucket.tokens >= 1
            if allowed:
                bucket.tokens -= 1
            wait = 0.0 if allowed else (1 - bucket.tokens) / self.rate
            return Decision(
                allowed=allowed,
                limit=self.requests_per_minute,
                remaining=int(bucket.tokens),
                reset=(self.capacity - bucket.tokens) / self.rate,
                retry_after=wait,
            )

    def tokens(self, key: str) -> float:
        """The tokens ``key`` has now (a full bucket if it has none yet)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return float(self.capacity)
            self._refill(bucket, self.clock())
            return bucket.tokens

    def sweep(self) -> int:
        """Drop buckets that have been full for a whole refill period; returns how many."""
        with self._lock:
            return self._sweep(self.clock(), force=True)

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.capacity), bucket.tokens + elapsed * self.rate)
        if len(self._buckets) > self.max_clients:
            self._evict()
        bucket.updated = now

    def _sweep(self, now: float, force: bool = False) -> int:
        period = self.capacity / self.rate  # time to refill from empty
        due = self._last_sweep is None or now - self._last_sweep >= min(period, 60.0)
        if not (force or due):
            return 0
        self._last_sweep = now
        idle = []
        for key, bucket in self._buckets.items():
            full_at = bucket.updated + (self.capacity - bucket.tokens) / self.rate
            if now - full_at > period:
                idle.append(key)
        for key in idle:
            del self._buckets[key]
        return len(idle)

    def _evict(self) -> None:
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)


class RateLimiter(MiddlewarePlugin):
    """Token-bucket rate limiting per client (the course's Lab 3), reload-proof."""

    name = "rate-limiter"
    version = "1.0.0"
    description = "Token-bucket rate limiting per client, with x-ratelimit-* headers"
    config_model = RateLimiterConfig

    def __init__(self) -> None:
        self.config = RateLimiterConfig()
        self.store: BucketStore = self._new_store(self.config)
        self._keys: frozenset[str] = frozenset()  # key_id() of each configured API key
        self._identities: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()
        self._identities_lock = threading.Lock()

    @staticmethod
    def _new_store(config: RateLimiterConfig) -> BucketStore:
        if _store_factory is not None:
            return _store_factory(config)
        return BucketStore(
            config.requests_per_minute,
            config.burst_size,
            max_clients=config.max_clients,
        )

    def init(self, ctx: Context, config: RateLimiterConfig) -> None:
        self.config = config
        self.store = self._new_store(config)
        self._keys = frozenset(key_id(key.strip()) for key in config.api_keys if key.strip())

    def export_state(self) -> BucketStore:
        """A view on the live buckets: tokens spent between export and swap are not lost,
        and the new instance's settings never become the old one's."""
        return self.store.view()

    def import_state(self, state: Any) -> None:
        if isinstance(state, BucketStore) or hasattr(state, "acquire"):
            config = self.config
            state.reshape(config.requests_per_minute, config.burst_size, config.max_clients)
            self.store = state

    def get_middleware(self) -> Any:
        return lambda app: RateLimitMiddleware(app, plugin=self)

    def health_check(self, ctx: Context) -> Any:
        check = getattr(self.store, "health", None)
        if check is not None:
            return check()  # a shared store says here when it fails (or is Degraded)
        return None

    def client_of(self, scope: Scope) -> str:
        """The bucket key of a request: a verified identity, else the client's address."""
        config = self.config
        address = "ip:" + client_address(
            scope, trust_forwarded=config.trust_forwarded, hops=config.forwarded_hops
        )
        identity = self._verified(scope)
        if identity is None:
            return address
        return self._admit(address, identity)

    def _verified(self, scope: Scope) -> str | None:
        shared = scope.get("state", {})
        known = shared.get(CLIENT)
        if isinstance(known, str) and known and not known.startswith("ip:"):
            return known  # established by earlier middleware (custom-auth: sub:<sub>)
        token = bearer_token(scope)
        if token is None:
            return None
        if isinstance(shared.get(CLAIMS), dict):
            return key_id(token)  # custom-auth verified it, and it names no subject
        hashed = key_id(token)
        return hashed if hashed in self._keys else None  # an invented token: no identity

    def _admit(self, address: str, identity: str) -> str:
        """``identity``, unless ``address`` already holds its cap of other identities."""
        limit = self.config.max_keys_per_address
        with self._identities_lock:
            seen = self._identities.get(address)
            if seen is None:
                seen = self._identities[address] = OrderedDict()
                while len(self._identities) > self.config.max_clients:
                    self._identities.popitem(last=False)
            else:
                self._identities.move_to_end(address)
            if identity in seen:
                seen.move_to_end(identity)
                return identity
            if len(seen) >= limit and hasattr(self.store, "__contains__"):
                for gone in [key for key in seen if key not in self.store]:
                    del seen[gone]  # its bucket expired: its place is free again
            if len(seen) >= limit:
                return address  # beyond the cap: the address's own bucket
            seen[identity] = None
            return identity


class RateLimitMiddleware:
    """Pure ASGI: a 429 when the bucket is empty, rate-limit headers on every response."""

    def __init__(self, app: ASGIApp, *, plugin: RateLimiter) -> None:
        self.app = app
        self.plugin = plugin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or path_matches(scope["path"], self.plugin.config.skip_paths):
            await self.app(scope, receive, send)
            return
        client = self.plugin.client_of(scope)
        state(scope).setdefault(CLIENT, client)
        decision = self.plugin.store.acquire(client)
        if inspect.isawaitable(decision):  # a shared store (Redis) answers asynchronously
            decision = await decision
        headers = _headers(decision)
        if not decision.allowed:
            retry = max(1, math.ceil(decision.retry_after))
            await send_error(
                send,
                429,
                f"Rate limit reached: {_number(decision.limit)} requests per minute with bursts "
                f"of {self.plugin.store.capacity}. Retry after {retry}s.",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={**headers, "Retry-After": str(retry)},
            )
            return
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *raw]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _headers(decision: Decision) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": _number(decision.limit),
        "x-ratelimit-remaining-requests": str(decision.remaining),
        "x-ratelimit-reset-requests": _duration(decision.reset),
    }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _duration(seconds: float) -> str:
    """OpenAI's style: ``250ms``, ``12s``, ``1m30s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    seconds = math.ceil(seconds)
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
