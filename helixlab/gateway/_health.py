"""Health, outside every plugin: ``/livez``, ``/readyz`` and ``/health``.

The gateway's outermost app answers these before any lease is taken or any middleware
runs, so a rate limiter's empty bucket (behind a proxy every client shares one) or an
authentication plugin never turns a health probe into a 429 or a 401.

- ``GET /livez`` — liveness (Kubernetes ``livenessProbe``): 200 while the process's event
  loop answers. It runs no plugin code and never fails because a plugin or an upstream
  does: restarting the process would not mend those.
- ``GET /readyz`` — readiness (``readinessProbe``, and what a load balancer should check):
  200 when this gateway can serve — its chain is built, a provider runs, every plugin that
  guards requests (custom-auth, ``required: true``) is serving, and it is not stopping;
  else 503 with the reason. It calls no plugin's health check, so it is cheap to probe
  every second and an upstream's outage does not take every replica out at once.
- ``GET /health`` — the full check for people and monitoring: every running plugin's
  health check (concurrently, under the health timeout), 200 only when all pass, a
  provider runs and every guard serves; ``degraded`` (still 200, in rotation) when a check
  says it serves with less, e.g. a fleet's shared rate limit not enforced while its Redis
  is down under policy ``open``. The status (and a guard that is down, by name and
  phase) for everyone; the per-plugin detail only as ``health_detail`` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._chat import CONFIG_KEY
from ._endpoints import ERROR_HANDLERS, KERNEL_KEY
from ._guards import unguarded

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["HEALTH_PATHS", "make_health_app"]

HEALTH_PATHS = frozenset({"/health", "/livez", "/readyz"})
STOPPING_KEY = "helixlab.stopping"  # a callable: whether the server is shutting down
AUTH_PLUGIN = "custom-auth"  # whose tokens unlock /health's detail


def _generation(kernel: Kernel) -> tuple[Any, Any]:
    """The current generation's live names and its gateway state (None: not built)."""
    with kernel.lease() as lease:
        return lease.generation.live, lease.extras.get("gateway")


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    kernel = request.scope[KERNEL_KEY]
    live, state = _generation(kernel)
    reasons = []
    if request.scope.get(STOPPING_KEY, lambda: False)():
        reasons.append("the gateway is stopping")
    if state is None:
        reasons.append("the gateway is not built yet")
    elif not state.router.providers:
        reasons.append("no provider plugin is running")
    missing = unguarded(kernel, live)
    reasons += [f"plugin {m.plugin!r} guards requests and is not serving: {m.why}" for m in missing]
    if reasons:
        body = {
            "status": "not_ready",
            "reason": "; ".join(reasons),
            "guards": [m.json(detail=False) for m in missing],
        }
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready"})


async def health(request: Request) -> Response:
    """Every running plugin's check (run concurrently, on the kernel loop)."""
    kernel = request.scope[KERNEL_KEY]
    live, state = _generation(kernel)
    statuses = await kernel.ahealth()  # the async twin: this already runs on the kernel loop
    providers = [route.plugin for route in state.router.providers] if state is not None else []
    missing = unguarded(kernel, live)
    healthy = (
        bool(providers) and not missing and all(status.healthy for status in statuses.values())
    )
    status = 200 if healthy else 503
    word = "ok" if healthy else "unavailable"
    if healthy and any(s.degraded for s in statuses.values()):
        word = "degraded"  # a check serves with less (a fleet's shared limit not enforced): 200
    body: dict[str, Any] = {"status": word}
    detail = await _may_see_detail(request, kernel)
    if missing:  # which guard is down, by name and phase, is no secret: requests say it too
        body["guards"] = [m.json(detail) for m in missing]
    if not detail:
        return JSONResponse(body, status_code=status)
    body["providers"] = providers
    body["plugins"] = {
        name: {"healthy": status.healthy, "state": status.state, "detail": status.detail}
        for name, status in statuses.items()
    }
    if not providers:
        body["detail"] = "no provider plugin is running"
    return JSONResponse(body, status_code=status)


async def _may_see_detail(request: Request, kernel: Kernel) -> bool:
    """Whether this caller gets ``/health``'s per-plugin detail (see ``health_detail``)."""
    config = request.scope.get(CONFIG_KEY)
    policy = getattr(config, "health_detail", "auth")
    if policy != "auth":
        return policy == "public"
    try:
        auth: Any = kernel.get(AUTH_PLUGIN)  # custom-auth: authenticate(), allows()
    except LookupError:
        return False  # no verifier loaded: nobody is known, nobody sees detail
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        claims = await auth.authenticate(token.strip())
    except Exception:  # an invalid token: the status only, like no token
        return False
    return bool(auth.allows(claims))


def make_health_app() -> Starlette:
    """The three health routes (GET and HEAD), errors in the OpenAI shape."""
    return Starlette(
        routes=[
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers=ERROR_HANDLERS,
    )
