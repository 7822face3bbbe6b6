"""Building the gateway from one generation of plugins, aside, before the kernel swaps it in.

The kernel calls the builder registered under ``"gateway"`` with every new live set; what
it returns becomes ``lease.extras["gateway"]`` of that generation. A request holds its
lease for its whole life, so it runs on the chain and the provider instances it started
with, even if a reload swaps a new generation in meanwhile. A plugin that cannot supply
its part (``get_middleware`` raising, a provider without ``capabilities``) makes the
build, and so the reload, fail: the kernel rolls back and the old gateway keeps serving.

Middleware order: load order (dependencies first, then higher ``priority``, then name),
and the FIRST middleware in load order is the OUTERMOST — it sees the request first and
the response last. So a logger that others depend on wraps them all, and an auth
middleware with a higher priority runs before a rate limiter of lower priority.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import DependencyError, PluginError
from ..kernel import MiddlewarePlugin, Plugin, ProviderPlugin, ToolPlugin
from ..llm import ProviderCapabilities, Tool
from ._routing import ProviderRoute, Router

__all__ = ["GatewayState", "build_state", "make_builder"]

ROUTER_KEY = "helixlab.router"
DEFAULT_TOOL_TIMEOUT = 10.0  # seconds a server-side tool may run unless its plugin says


@dataclass(frozen=True)
class GatewayState:
    """What one generation serves with: the prebuilt chain, its router, the chain's order."""

    app: ASGIApp
    router: Router
    middleware: tuple[str, ...] = ()  # outermost first


class _Core:
    """The innermost app of a chain: hands the generation's router to the endpoints."""

    __slots__ = ("app", "router")

    def __init__(self, app: ASGIApp, router: Router):
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTER_KEY] = self.router
        await self.app(scope, receive, send)


def _phase(name: str, phase: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(name, phase, cause=exc) from exc


def _provider_route(name: str, plugin: ProviderPlugin, priority: int, position: int) -> Any:
    provider = _phase(name, "get_provider", plugin.get_provider)
    missing = [
        attr
        for attr in ("complete", "complete_stream", "capabilities")
        if not callable(getattr(provider, attr, None))
    ]
    if missing:
        raise PluginError(
            name,
            "get_provider",
            f"Plugin {name!r} returned a provider without {', '.join(missing)}(); a provider "
            f"needs async complete, complete_stream, health_check and capabilities.",
        )
    caps = _phase(name, "capabilities", provider.capabilities)
    if isinstance(caps, Mapping):
        caps = _phase(name, "capabilities", lambda: ProviderCapabilities(**caps))
    if not isinstance(caps, ProviderCapabilities):
        raise PluginError(
            name,
            "capabilities",
            f"Plugin {name!r}'s provider.capabilities() returned {caps!r}; return a "
            f"helixlab.llm.ProviderCapabilities.",
        )
    return ProviderRoute(name, provider, caps, priority, position)


def _tools(name: str, plugin: ToolPlugin) -> list[Tool]:
    items = _phase(name, "get_tools", plugin.get_tools)
    tools = []
    for item in items or ():
        if isinstance(item, Tool):
            tools.append(item)
        elif callable(item):
            tools.append(_phase(name, "get_tools", partial(Tool.from_function, item)))
        else:
            raise PluginError(
                name,
                "get_tools",
                f"Plugin {name!r} offered {item!r} as a tool; offer helixlab.llm.Tool objects "
                f"or plain functions.",
            )
    return tools


def _tool_timeout(name: str, plugin: Plugin) -> float:
    """How long the plugin's tools may run: its ``tool_timeout`` (seconds), else the default."""
    value = getattr(plugin, "tool_timeout", None)
    if value is None:
        return DEFAULT_TOOL_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PluginError(
            name,
            "get_tools",
            f"Plugin {name!r}'s tool_timeout is {value!r}; give a number of seconds above 0.",
        )
    return float(value)


def build_state(
    instances: Mapping[str, Plugin],
    core: ASGIApp,
    *,
    order: Sequence[str] = (),
    priority: Callable[[str], int] | None = None,
) -> GatewayState:
    """The gateway of one live set: providers routed, tools collected, middleware chained.

    ``order`` is the kernel's load order (plugins missing from it follow by name);
    ``priority(name)`` the configured priority. Raises PluginError naming the plugin and
    the phase (``get_provider``, ``capabilities``, ``get_tools``, ``get_middleware``).
    """
    names = [n for n in order if n in instances]
    names += sorted(set(instances) - set(names))
    providers, middleware = [], []
    tools: dict[str, Any] = {}
    owners: dict[str, str] = {}
    timeouts: dict[str, float] = {}
    for position, name in enumerate(names):
        plugin = instances[name]
        rank = priority(name) if priority else type(plugin).priority
        if isinstance(plugin, ProviderPlugin):
            providers.append(_provider_route(name, plugin, rank, position))
        if isinstance(plugin, ToolPlugin):
            for tool in _tools(name, plugin):
                if tool.name in tools:
                    raise PluginError(
                        name,
                        "get_tools",
                        f"Plugin {name!r} offers a tool named {tool.name!r}, which plugin "
                        f"{owners[tool.name]!r} already offers; tool names must be unique.",
                    )
                tools[tool.name], owners[tool.name] = tool, name
                timeouts[tool.name] = _tool_timeout(name, plugin)
        if isinstance(plugin, MiddlewarePlugin):
            factory = _phase(name, "get_middleware", plugin.get_middleware)
            if not callable(factory):
                raise PluginError(
                    name,
                    "get_middleware",
                    f"Plugin {name!r}'s get_middleware() returned {factory!r}; return a "
                    f"factory taking the next ASGI app and returning the wrapped app.",
                )
            middleware.append((name, factory))
    router = Router.of(providers, tools, timeouts)
    app: ASGIApp = _Core(core, router)
    for name, factory in reversed(middleware):
        wrapped = _phase(name, "get_middleware", partial(factory, app))
        if not callable(wrapped):
            raise PluginError(
                name,
                "get_middleware",
                f"Plugin {name!r}'s middleware factory returned {wrapped!r}, not an ASGI app.",
            )
        app = wrapped
    return GatewayState(app, router, tuple(name for name, _ in middleware))


def make_builder(core: ASGIApp) -> Callable[[Mapping[str, Plugin], Any], GatewayState]:
    """The builder to register with ``kernel.add_builder("gateway", ...)``.

    It orders middleware by the graph of the generation being built, so a reload that
    changes a priority reorders the chain in that same reload.
    """

    def build(instances: Mapping[str, Plugin], graph: Any) -> GatewayState:
        try:
            order: Sequence[str] = graph.load_order()
        except DependencyError:
            order = ()

        def priority(name: str) -> int:
            node = graph.nodes.get(name)
            return node.priority if node is not None else 0

        return build_state(instances, core, order=order, priority=priority)

    return build
