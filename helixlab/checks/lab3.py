"""Lab 3 — a rate-limiting middleware plugin: the checks behind ``%helix check lab3``.

What the lab asks for (see ``labs/lab3_middleware_plugin.ipynb``): a middleware plugin named
``lab-rate-limiter`` with config ``requests_per_minute`` (the refill rate) and
``burst_size`` (the bucket's capacity), a token bucket per client, a 429 in OpenAI's error
shape with a ``Retry-After`` header when a client's bucket is empty, and buckets that a hot
reload hands to the next version (``export_state`` / ``import_state``). Its clock is the
instance attribute ``clock`` (``time.monotonic`` unless replaced), so time can be moved
instead of waited for.

How the checks work, so you can read them and trust them: the first and last look at the
notebook's own kernel (``helix``). The others load the ``lab-rate-limiter`` class that
``helix`` has registered into a fresh, private :class:`~helixlab.Kernel`, next to a tiny
provider that always answers ``"ok"``, with ``requests_per_minute: 1`` and
``burst_size: 3`` — one token a minute, so no token comes back while a check runs unless
a check moves the clock, and an outermost middleware of their own that tells them when
the gateway has finished each request. They serve that kernel's gateway on loopback and send it
requests, each client with its own bearer token, and read the statuses, headers and
bodies that come back. Your notebook's plugin is never touched, and the checks never read
your source code.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from .._net import shared_ssl_context
from ..errors import ReloadError
from ..kernel import Kernel, MiddlewarePlugin, Plugin, Timeouts
from . import _probes
from ._core import Missing, Probe, lab

__all__ = ["BURST", "NAME", "RPM"]

NAME = "lab-rate-limiter"
PROVIDER = "lab3-answer"
MODEL = "lab-model"
RPM, BURST = 1, 3

#: Short, so that a plugin that hangs fails its check quickly instead of blocking the cell.
TIMEOUTS = Timeouts(init=5, start=5, stop=5, health=3, export_state=5, import_state=5, drain=5)
CALL_TIMEOUT = 10.0

check = lab("lab3", "a rate-limiting middleware plugin", plugins=(NAME,))


# -- a provider that always answers "ok" ---------------------------------------------------


def _answer(calls: list[str]) -> type[Plugin]:
    """The provider behind the limiter; ``calls`` counts what got past the limiter."""
    return _probes.answering_provider(
        PROVIDER,
        models=(MODEL,),
        content="ok",
        description="the checks' provider: always answers 'ok'",
        calls=calls,
    )


class _Finished:
    """Counts the /v1/ requests whose handling has finished on the gateway's side.

    A limiter that sends its 429 and then calls the next app anyway does so after the
    client already has the 429: the checks wait for the handling to end before they count
    what reached the provider.
    """

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def done(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self.count >= count, CALL_TIMEOUT)


def _tracker(finished: _Finished) -> type[Plugin]:
    """The outermost middleware of the checks' gateway: it sees each request to its end."""

    def wrap(app: Any) -> Any:
        async def tracked(scope: Any, receive: Any, send: Any) -> None:
            try:
                await app(scope, receive, send)
            finally:
                if scope.get("type") == "http" and scope.get("path", "").startswith("/v1/"):
                    finished.done()

        return tracked

    class _Tracker(MiddlewarePlugin):
        name = "lab3-tracker"
        version = "1.0.0"
        description = "the checks' outermost middleware: knows when a request has ended"
        priority = 1_000_000

        def get_middleware(self) -> Any:
            return wrap

    return _Tracker


# -- the private setup --------------------------------------------------------------------


@dataclass
class _Gateway:
    """A private kernel with the learner's limiter in front of the answering provider."""

    kernel: Kernel
    client: httpx.Client
    calls: list[str]  # one entry per request that reached the provider
    finished: _Finished
    sent: int = 0

    def ask(self, who: str) -> httpx.Response:
        """One request as ``who``, returned once the gateway has finished handling it."""
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {who}"}
        response = self.client.post("/v1/chat/completions", json=body, headers=headers)
        self.sent += 1
        self.finished.wait_for(self.sent)
        return response

    def spend_burst(self, who: str) -> None:
        """Send ``BURST`` requests as ``who``; each must pass."""
        for i in range(1, BURST + 1):
            reached = len(self.calls)
            response = self.ask(who)
            if response.status_code != 200 and len(self.calls) == reached:
                raise Missing(
                    f"with burst_size {BURST}, request {i} of a new client got "
                    f"{response.status_code}{_error_text(response)} and never reached the "
                    f"provider: when the client has a token, the middleware must pass the "
                    f"request on with `await self.app(scope, receive, send)` (step 3)."
                )
            if response.status_code != 200:
                raise Missing(
                    f"with burst_size {BURST}, request {i} of a new client got "
                    f"{response.status_code}{_error_text(response)}; a new client starts with a "
                    f"full bucket of burst_size tokens (TokenBucket.__init__ and take(), step 2)."
                )

    def refused(self, who: str) -> httpx.Response:
        """The request after the burst, which must be refused."""
        response = self.ask(who)
        if response.status_code == 200 and _below_zero(self.plugin):
            raise Missing(
                f"with burst_size {BURST} and one token a minute, request {BURST + 1} in a row "
                f"got 200, and the bucket went below zero: take() spent a token it did not "
                f"have. Allow a request only with a whole token, `if self.tokens >= 1:` (not "
                f"`> 0`), step 2."
            )
        if response.status_code == 200:
            raise Missing(
                f"with burst_size {BURST} and one token a minute, request {BURST + 1} in a row "
                f"got 200. TokenBucket.take() must spend a token when there is one and, when "
                f"there is none, return the seconds until there will be; the middleware then "
                f"answers 429 (steps 2 and 3)."
            )
        return response

    def use_up(self, who: str) -> httpx.Response:
        """Spend ``who``'s whole bucket: ``BURST`` requests pass, the next one is refused."""
        self.spend_burst(who)
        return self.refused(who)

    @property
    def plugin(self) -> Any:
        """The learner's limiter (its attributes are the learner's: the checks set ``clock``)."""
        return self.kernel.get(NAME)


def _error_text(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f" ({message})"


@contextlib.contextmanager
def _gateway(probe: Probe, limiter: type[Plugin] | None = None) -> Iterator[_Gateway]:
    """A private gateway with the limiter (a fresh run of its cell, unless given)."""
    calls: list[str] = []
    finished = _Finished()
    limiter = limiter or _probes.registered(probe, NAME)
    classes = (_answer(calls), _tracker(finished), limiter)
    with _probes.private_kernel(TIMEOUTS, *classes) as kernel:
        _probes.configure(
            kernel,
            NAME,
            {"requests_per_minute": RPM, "burst_size": BURST},
            fix="LabLimiterConfig needs the fields requests_per_minute and burst_size (step 1).",
        )
        report = kernel.load_all()
        if not report.ok:
            raise Missing(f"a fresh kernel could not load {NAME}: {report}")
        server = kernel.serve(port=0)
        # a new connection per request: a kept-alive one waits ~40 ms for a delayed ACK
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(
            base_url=server.url,
            timeout=CALL_TIMEOUT,
            limits=no_keepalive,
            verify=shared_ssl_context(),
        ) as client:
            yield _Gateway(kernel, client, calls, finished)


# -- the checks ---------------------------------------------------------------------------


@check(f"{NAME} is registered and active in helix")
def registered_and_active(probe: Probe) -> None:
    _probes.require_active(probe, NAME)


@check(f"a client's first {BURST} requests (burst_size {BURST}) pass with 200")
def under_the_limit(probe: Probe) -> None:
    with _gateway(probe) as gateway:
        gateway.spend_burst("client-a")


@check("the next one gets 429 in OpenAI's error shape, with a Retry-After header")
def over_the_burst(probe: Probe) -> None:
    with _gateway(probe) as gateway:
        response = gateway.use_up("client-a")
        if response.status_code == 429 and len(gateway.calls) > BURST:
            raise Missing(
                f"the request over the burst got its 429, and reached the provider anyway "
                f"(the provider answered {len(gateway.calls)} of {BURST + 1} requests): after "
                f"sending the 429, `return`, so that self.app is not called (step 3). "
                f"Otherwise the upstream is not protected, and the gateway sees a second "
                f"response ('Unexpected ASGI message ... after response already completed')."
            )
        if response.status_code != 429:
            raise Missing(
                f"the request over the burst got {response.status_code}{_error_text(response)}; "
                f"answer 429 (Too Many Requests), step 3."
            )
        try:
            error = response.json()["error"]
            shaped = isinstance(error["message"], str) and error["type"] == "rate_limit_error"
        except (ValueError, KeyError, TypeError):
            shaped = False
        if not shaped:
            raise Missing(
                f"the 429's body is {response.text[:120]!r}; OpenAI clients expect "
                f'{{"error": {{"message": ..., "type": "rate_limit_error", ...}}}}: answer '
                f"with helixlab.gateway.error_response(429, message, headers=...), step 3."
            )
        retry = response.headers.get("retry-after")
        if retry is None or not retry.isdigit() or int(retry) < 1:
            raise Missing(
                f"the 429's Retry-After header is {retry!r}; it must be a whole number of "
                f"seconds, at least 1: math.ceil() of what take() returned (step 3)."
            )
        if int(retry) > 60 / RPM + 1:
            raise Missing(
                f"Retry-After is {retry}s, but at {RPM} request(s) a minute one token is back "
                f"within {int(60 / RPM)}s; take() returns (1 - tokens) / rate (step 2)."
            )


@check("other clients are not affected by one client's empty bucket")
def other_clients(probe: Probe) -> None:
    with _gateway(probe) as gateway:
        gateway.use_up("client-a")
        response = gateway.ask("client-b")
        if response.status_code != 200:
            raise Missing(
                f"after client-a used up its bucket, client-b's first request got "
                f"{response.status_code}; each client has its own bucket, keyed by "
                f"client_of(scope) (bucket_for(), step 2)."
            )


@check(f"tokens come back over time: one every {int(60 / RPM)}s at {RPM} request(s) a minute")
def refills(probe: Probe) -> None:
    with _gateway(probe) as gateway:
        plugin = gateway.plugin
        if not callable(getattr(plugin, "clock", None)):
            raise Missing(
                f"{NAME} has no `clock`; init() sets self.clock = time.monotonic and the "
                f"middleware reads the time from it (step 1)."
            )
        now = [1_000.0]
        fake: Callable[[], float] = lambda: now[0]  # noqa: E731
        plugin.clock = fake
        gateway.use_up("client-c")
        now[0] += 60 / RPM / 2
        if gateway.ask("client-c").status_code == 200:
            raise Missing(_half_token_hint(plugin))
        now[0] += 60 / RPM / 2 + 0.01
        response = gateway.ask("client-c")
        if response.status_code != 200:
            raise Missing(
                f"one token's time ({int(60 / RPM)}s) after the bucket ran dry, the next request "
                f"still got {response.status_code}; refill() must add the tokens earned since "
                f"self.updated (elapsed seconds × rate, capped at capacity), step 2."
            )
        if gateway.ask("client-c").status_code == 200:
            raise Missing(
                "one token came back, and two requests passed; take() must spend the token it "
                "allows (step 2)."
            )
        now[0] += 3600
        passed = sum(gateway.ask("client-c").status_code == 200 for _ in range(BURST + 1))
        if passed != BURST:
            raise Missing(
                f"an hour later {passed} requests in a row passed, expected {BURST}: a bucket "
                f"never holds more than burst_size tokens (refill(), step 2)."
            )


def _below_zero(plugin: Plugin) -> bool:
    """Whether one of the plugin's buckets (as the lab's starter keeps them) went negative."""
    buckets = getattr(plugin, "buckets", None)
    found = buckets.values() if isinstance(buckets, dict) else ()
    tokens = [getattr(b, "tokens", None) for b in found]
    return any(isinstance(t, int | float) and t < 0 for t in tokens)


def _half_token_hint(plugin: Plugin) -> str:
    """Half a token's time after a bucket ran dry, a request passed: take() or refill()?"""
    if _below_zero(plugin):
        return (
            "half a token's time after the bucket ran dry, a request passed, and the bucket "
            "went below zero: take() spent a token it did not have. Allow a request only "
            "with a whole token, `if self.tokens >= 1:` (not `> 0`), step 2."
        )
    return (
        "half a token's time after the bucket ran dry, a request passed: either refill() "
        "adds more than (now - self.updated) * self.rate tokens, or take() lets a request "
        "through with less than one whole token (it must test `self.tokens >= 1`), step 2."
    )


@check("a hot reload of the limiter keeps every client's bucket (export_state / import_state)")
def survives_reload(probe: Probe) -> None:
    with _gateway(probe) as gateway:
        gateway.use_up("client-d")
        before = gateway.plugin
        try:
            gateway.kernel.reload(NAME)
        except ReloadError as exc:
            raise Missing(f"reloading {NAME} failed: {exc}") from None
        if gateway.plugin is before:
            raise Missing("after the reload the limiter is still the same instance.")
        response = gateway.ask("client-d")
        if response.status_code == 200:
            raise Missing(
                "client-d had used up its bucket; after a hot reload of the limiter its next "
                "request passed: the new instance started with empty buckets. export_state() "
                "must return the buckets and import_state(state) must take them (step 4)."
            )
        if gateway.ask("client-e").status_code != 200:
            raise Missing("after the reload, a new client was refused.")


@check("re-running the limiter's cell keeps every client's bucket (no module-level buckets)")
def survives_cell_rerun(probe: Probe) -> None:
    scope = dict(probe.namespace)  # the cell's module, as the notebook would have it
    first = probe.fresh_class(NAME, scope)
    with _gateway(probe, first) as gateway:
        gateway.use_up("client-g")
        again = probe.fresh_class(NAME, scope)  # what re-running the cell does
        if gateway.ask("client-g").status_code == 200:  # the running instance, not reloaded
            raise Missing(
                "client-g had used up its bucket; the limiter's cell ran again and, before "
                "any reload, client-g's next request passed. Buckets kept outside the plugin "
                "(a module-level dict) start empty each time the cell runs: keep them on the "
                "instance (self.buckets, in init()) and hand them over with export_state() / "
                "import_state() (step 4)."
            )
        try:
            report = gateway.kernel.define([again], source="the checks' re-run", origin="cell")
        except ReloadError as exc:
            raise Missing(f"re-running the limiter's cell made its reload fail: {exc}") from None
        passed = gateway.ask("client-g").status_code == 200
        if passed and getattr(report, "order", None):
            raise Missing(
                "client-g had used up its bucket; the limiter's cell ran again, its class "
                "was hot reloaded, and client-g's next request passed: the new instance "
                "started with empty buckets. export_state() must return the buckets and "
                "import_state(state) must take them (step 4)."
            )
        if passed:
            raise Missing(
                "client-g had used up its bucket; after the limiter's cell ran again its next "
                "request passed. Buckets kept outside the plugin (a module-level dict) start "
                "empty each time the cell runs: keep them on the instance (self.buckets, in "
                "init()) and hand them over with export_state() / import_state() (step 4)."
            )


@check("a configure applies the new burst_size and rate to the buckets that exist")
def configure_updates_buckets(probe: Probe) -> None:
    with _gateway(probe) as gateway:
        now = [5_000.0]
        fake: Callable[[], float] = lambda: now[0]  # noqa: E731
        gateway.plugin.clock = fake
        gateway.use_up("client-h")
        bigger = BURST + 2
        _probes.configure(
            gateway.kernel,
            NAME,
            {"burst_size": bigger},
            fix="LabLimiterConfig needs a burst_size field (step 1).",
        )
        gateway.plugin.clock = fake  # the new instance, on the same clock
        if gateway.ask("client-h").status_code == 200:
            raise Missing(
                "client-h had used up its bucket; right after a configure its next request "
                "passed: a configure must not refill anyone's bucket. import_state() keeps "
                "each bucket's tokens (step 4)."
            )
        now[0] += 3600
        passed = sum(gateway.ask("client-h").status_code == 200 for _ in range(bigger + 1))
        if passed != bigger:
            raise Missing(
                f"after configuring burst_size {bigger} (it was {BURST}), an hour later "
                f"client-h had {passed} requests in a row, expected {bigger}: buckets that "
                f"already exist must take the new limits too. In import_state(), set each "
                f"handed-over bucket's capacity and rate from the new self.config (step 4)."
            )


@check(f"{NAME} is healthy, and the gateway's GET /health answers 200")
def healthy(probe: Probe) -> None:
    _probes.require_healthy(probe, NAME)
    with _gateway(probe) as gateway:
        for _ in range(BURST + 2):
            response = gateway.client.get("/health")
            if response.status_code != 200:
                raise Missing(
                    f"GET /health through the limiter answered {response.status_code}; the "
                    f"limiter should count only /v1/ requests, so health probes always pass."
                )
