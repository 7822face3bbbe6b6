"""Which provider serves a model, and which tools the gateway can run: the router that one
generation of plugins gives the gateway.

Routing rule: the provider whose ``capabilities().models`` lists the requested model;
among several, the highest priority, then the first in load order. A model no provider
lists goes to the highest-priority provider that lists no models at all (an open
provider, e.g. one in front of an API whose catalogue it does not enumerate); with no
open provider, the model is unknown (404 ``model_not_found``), and with no provider at all
the gateway cannot serve (503).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..llm import ProviderCapabilities, Tool, ToolDefinition
from ._errors import GatewayError

__all__ = ["ProviderRoute", "Router"]


@dataclass(frozen=True)
class ProviderRoute:
    """One provider plugin's provider, with what routing needs to know about it."""

    plugin: str
    provider: Any
    capabilities: ProviderCapabilities
    priority: int = 0
    position: int = 0  # place in load order: breaks priority ties

    @property
    def models(self) -> tuple[str, ...]:
        return self.capabilities.models

    def rank(self) -> tuple[int, int]:
        return (-self.priority, self.position)


@dataclass(frozen=True)
class Router:
    """The providers and server-side tools of one generation (immutable once built)."""

    providers: tuple[ProviderRoute, ...] = ()  # in routing order (ProviderRoute.rank)
    tools: Mapping[str, Tool] = field(default_factory=dict)
    timeouts: Mapping[str, float] = field(default_factory=dict)  # tool -> its plugin's limit

    @classmethod
    def of(
        cls,
        providers: Iterable[ProviderRoute],
        tools: Mapping[str, Tool],
        timeouts: Mapping[str, float],
    ) -> Router:
        """A router trying ``providers`` in routing order."""
        return cls(tuple(sorted(providers, key=ProviderRoute.rank)), tools, timeouts)

    def route(self, model: str) -> ProviderRoute:
        """The provider for ``model``; GatewayError 503 (no provider) or 404 (unknown model)."""
        if not self.providers:
            raise GatewayError(
                503,
                "No provider plugin is running, so no completion can be served; load one "
                "(e.g. custom-provider) and retry.",
                code="no_provider",
            )
        for route in self.providers:
            if model in route.models:
                return route
        for route in self.providers:
            if not route.models:
                return route
        raise GatewayError(
            404,
            f"The model {model!r} does not exist or no provider serves it. "
            f"Available models: {', '.join(self.models()) or 'none'}.",
            param="model",
            code="model_not_found",
        )

    def models(self) -> list[str]:
        """Every model some provider lists, each once, in routing order."""
        seen: dict[str, None] = {}
        for route in self.providers:
            for model in route.models:
                seen.setdefault(model)
        return list(seen)

    def owner(self, model: str) -> str:
        """The plugin that serves a listed ``model``."""
        return next(r.plugin for r in self.providers if model in r.models)

    def definitions(self) -> list[ToolDefinition]:
        """What the model is offered when the gateway runs tools and the request offers none."""
        return [tool.definition for tool in self.tools.values()]

    def runs(self, names: Iterable[str]) -> bool:
        """Whether every named tool is one the gateway can run itself."""
        names = list(names)
        return bool(names) and all(name in self.tools for name in names)
