"""The gateway's routes as one Starlette app, shared by every generation's chain.

``GET /v1/models`` (the union of the providers' models) and ``GET /v1/models/{id}``,
``GET /v1/plugins`` (every plugin's state, config redacted) and the chat completions
route; health is answered outside every chain (see ``_health``). Every error, including
unknown routes and unexpected exceptions, is answered in the OpenAI shape; an unexpected
exception is answered with a bare 500 that leaks nothing (the gateway's outer app logs
its traceback).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..kernel import redact
from ._build import ROUTER_KEY
from ._chat import chat_completions
from ._errors import GatewayError, error_response
from ._routing import Router

__all__ = ["KERNEL_KEY", "make_app"]

KERNEL_KEY = "helixlab.kernel"


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: what the running providers serve, as OpenAI lists models."""
    router: Router = request.scope[ROUTER_KEY]
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": router.owner(model)}
        for model in router.models()
    ]
    return JSONResponse({"object": "list", "data": data})


async def retrieve_model(request: Request) -> Response:
    """``GET /v1/models/{id}``: one served model (the openai client's ``models.retrieve``),
    or a 404 ``model_not_found`` naming the ones served."""
    router: Router = request.scope[ROUTER_KEY]
    model = request.path_params["model"]
    models = router.models()
    if model not in models:
        served = ", ".join(models) or "none"
        raise GatewayError(
            404,
            f"The model {model!r} does not exist or no running provider serves it. "
            f"Served: {served}.",
            type="invalid_request_error",  # what OpenAI answers for an unknown model
            param="model",
            code="model_not_found",
        )
    return JSONResponse(
        {"id": model, "object": "model", "created": 0, "owned_by": router.owner(model)}
    )


async def list_plugins(request: Request) -> Response:
    """``GET /v1/plugins``: states, versions, dependencies; secrets never appear."""
    kernel = request.scope[KERNEL_KEY]
    data = []
    for row in kernel.info():
        data.append(
            {
                "name": row.name,
                "kind": row.kind,
                "version": row.version,
                "state": row.state,
                "priority": row.priority,
                "enabled": row.enabled,
                "health": row.health,
                "reload_count": row.reload_count,
                "dependencies": list(row.dependencies),
                "dependents": list(row.dependents),
                "config": _jsonable(redact(row.config)),
                "error": row.error,
            }
        )
    return JSONResponse({"object": "list", "data": data})


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Unknown route: {request.method} {request.url.path}."
        return error_response(404, message, code="unknown_route")
    if exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
        return error_response(405, message, headers=exc.headers)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after answering: the gateway's outer app logs it, once.
    return error_response(500, "The gateway failed unexpectedly; the error was logged.")


#: What any of the gateway's Starlette apps answers for an HTTP error or an unexpected
#: exception, in the OpenAI shape (the routes here, the health app).
ERROR_HANDLERS: dict[Any, Any] = {HTTPException: _http_error, Exception: _unexpected}


def make_app() -> Starlette:
    """The routes, with every error answered in the OpenAI shape."""
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
            Route("/v1/plugins", list_plugins, methods=["GET"]),
        ],
        exception_handlers={
            GatewayError: _gateway_error,
            **ERROR_HANDLERS,
        },
    )
