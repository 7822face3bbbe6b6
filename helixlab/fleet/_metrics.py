"""``/metrics`` in the Prometheus text format, across every worker of a host.

prometheus_client's multiprocess mode: each worker writes its samples to files in
``$PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor before a worker starts), and any
worker answering ``/metrics`` aggregates all of them; the supervisor marks a dead worker's
files so its live gauges disappear. Requests by route, model, provider and status;
latency histograms; reloads by plugin and outcome; the generation each worker serves;
leases in flight (requests holding a generation).

Metrics name plugins, reload failures and worker ids, so they are not public: on the
gateway's port ``/metrics`` answers only the admin key (``Authorization: Bearer``), and
the supervisor serves them without credentials on a listener of its own,
``gateway: metrics_port:`` on ``metrics_host`` (loopback by default), for Prometheus.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._extras import needs

__all__ = ["Metrics", "MetricsMiddleware", "serve_metrics"]

_BODY_PEEK = 64 * 1024  # enough to read "model" from any sane request
_ROUTES = ("/v1/chat/completions", "/v1/models", "/v1/plugins", "/health", "/metrics")
_ROUTER_KEY = "helixlab.router"
_RELOAD_OUTCOMES = {"reloaded": "ok", "reload_failed": "failed", "rolled_back": "rolled_back"}


class Metrics:
    """The fleet's metrics, created once per worker process."""

    def __init__(self, worker: str) -> None:
        with needs("fleet", "the fleet"):
            from prometheus_client import Counter, Gauge, Histogram

        self.worker = worker
        self.served = 0  # this worker's own totals, for its heartbeat (live charts)
        self.errors = 0
        self.requests = Counter(
            "helixlab_requests",
            "Gateway requests by route, model, provider and status.",
            ["route", "model", "provider", "status"],
        )
        self.latency = Histogram(
            "helixlab_request_duration_seconds",
            "Time to the last byte of a response, by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.reloads = Counter(
            "helixlab_reloads", "Plugin reloads by plugin and outcome.", ["plugin", "outcome"]
        )
        self.generation = Gauge(
            "helixlab_fleet_generation",
            "The fleet generation each worker serves.",
            ["worker"],
            multiprocess_mode="liveall",
        )
        self.leases = Gauge(
            "helixlab_leases_in_flight",
            "Requests in flight, each holding a lease on a generation.",
            multiprocess_mode="livesum",
        )

    def on_event(self, event: Any) -> None:
        """A kernel subscriber: count reloads by plugin and outcome."""
        outcome = _RELOAD_OUTCOMES.get(event.kind)
        if outcome is not None:
            self.reloads.labels(event.plugin, outcome).inc()

    def serving(self, generation: int) -> None:
        self.generation.labels(self.worker).set(generation)


def render() -> tuple[bytes, str]:
    """Every worker's samples, aggregated, and the content type to send them with."""
    with needs("fleet", "the fleet"):
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI, outermost: answers ``GET /metrics``, times and counts everything else,
    and names the worker that answered in an ``x-helixlab-worker`` header."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.errors = getattr(app, "errors", None)  # the server flushes the gateway's on stop
        # which worker answered: what a user behind one port needs to tell workers apart
        self._served_by = (b"x-helixlab-worker", metrics.worker.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/metrics" and scope["method"] == "GET":
            refusal = _refusal(scope, getattr(self.app, "config", None))
            if refusal is not None:  # metrics name plugins, failures and workers: not public
                await refusal(scope, receive, send)
                return
            body, content_type = render()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", content_type.encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        route = path if path in _ROUTES else "other"
        peeked: list[bytes] = []
        seen = 0
        status = 500

        async def peek() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request" and seen < _BODY_PEEK:
                chunk = message.get("body", b"")
                peeked.append(chunk[: _BODY_PEEK - seen])
                seen += len(chunk)
            return message

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), self._served_by]}
            await send(message)

        t0 = time.perf_counter()
        self.metrics.leases.inc()
        try:
            await self.app(scope, peek if route == "/v1/chat/completions" else receive, watch)
        finally:
            self.metrics.leases.dec()
            model = _model(b"".join(peeked)) if peeked else ""
            provider = _provider(scope, model)
            if model and not provider:
                model = "other"  # a label per unknown model name would grow without bound
            self.metrics.requests.labels(route, model, provider, str(status)).inc()
            self.metrics.served += 1
            self.metrics.errors += status >= 500
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


def _refusal(scope: Scope, config: Any) -> Any:
    """None if the request carries the admin key; else the error to answer with."""
    from ..gateway import error_response

    key = getattr(config, "admin_key", None)
    if key is not None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                secret = key.get_secret_value().encode()
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), secret):
                    return None
    where = "gateway: metrics_port (loopback by default)"
    if key is None:
        return error_response(
            404,
            f"/metrics is served on the metrics listener ({where}), or here with the admin key.",
            code="unknown_route",
        )
    return error_response(
        401,
        f"/metrics needs `Authorization: Bearer <the admin key>`, or the metrics listener "
        f"({where}).",
        code="admin_key_missing",
        headers={"WWW-Authenticate": 'Bearer realm="helixlab-metrics"'},
    )


def serve_metrics(config: str, directory: str) -> Any:
    """The fleet's own /metrics listener (every worker's samples, no credentials) on the
    configuration's ``gateway: metrics_host:metrics_port``; None when no port is set.
    ``shutdown()`` the returned server to stop it."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from ..errors import FleetError
    from ..gateway import gateway_config
    from ..kernel import parse_config

    options = gateway_config(parse_config(config))
    if options.metrics_port is None:
        return None
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    try:
        server, _ = start_http_server(options.metrics_port, options.metrics_host, registry)
    except OSError as exc:
        where = f"{options.metrics_host}:{options.metrics_port}"
        raise FleetError(
            f"cannot serve /metrics on {where} (gateway: metrics_host, metrics_port): "
            f"{exc.strerror or exc}."
        ) from None
    return server


def _model(body: bytes) -> str:
    try:
        model = json.loads(body).get("model", "")
    except (ValueError, AttributeError):
        return ""
    return model if isinstance(model, str) and len(model) <= 100 else ""


def _provider(scope: Scope, model: str) -> str:
    router = scope.get(_ROUTER_KEY)
    if router is None or not model:
        return ""
    try:
        return router.owner(model)
    except StopIteration:
        return ""
