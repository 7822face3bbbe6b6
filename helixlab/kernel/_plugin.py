"""The plugin model: the ``Plugin`` base class, its kinds, its states and its context.

A plugin is a class. The seed's ``Name()/Version()/Description()/Dependencies()`` are
class attributes; lifecycle methods may be plain or ``async def``. A plugin reaches
another plugin only through ``ctx.get(name)``, and only if it declared it: the graph is
always the truth.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from ..errors import RegistryError, UndeclaredDependencyError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "Context",
    "MiddlewarePlugin",
    "Plugin",
    "PluginState",
    "ProviderPlugin",
    "ToolPlugin",
    "parse_dependency",
]


class PluginState(enum.StrEnum):
    """Where a plugin is in its lifecycle."""

    REGISTERED = "registered"
    INITIALIZED = "initialized"
    ACTIVE = "active"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Plugin:
    """Base class of every plugin. Override what you need; every method is optional.

    Lifecycle, driven by the kernel: ``init(ctx, config)`` → ``import_state(state)`` (on a
    reload) → ``start(ctx)`` → … → ``stop(ctx)``. ``health_check(ctx)`` raises (or returns
    False) when unhealthy. ``export_state()`` hands state to the next version on a reload.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    dependencies: ClassVar[tuple[str, ...]] = ()
    config_model: ClassVar[type[BaseModel] | None] = None
    reload_strategy: ClassVar[Literal["hot", "restart"]] = "hot"
    priority: ClassVar[int] = 0
    kind: ClassVar[str] = "plugin"

    def init(self, ctx: Context, config: Any) -> Any:
        """Prepare the instance; ``config`` is the validated ``config_model`` (or a dict)."""

    def start(self, ctx: Context) -> Any:
        """Begin serving."""

    def stop(self, ctx: Context) -> Any:
        """Release what ``start`` acquired; called once the instance has drained."""

    def health_check(self, ctx: Context) -> Any:
        """Raise, or return False or a message string, when unhealthy."""

    def export_state(self) -> Any:
        """State to hand to the next version on a reload (None: nothing to hand over)."""
        return None

    def import_state(self, state: Any) -> Any:
        """Receive what the previous version exported; called after init, before start."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} plugin {self.name!r} {self.version}>"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.dependencies, str):
            cls.dependencies = (cls.dependencies,)
        else:
            cls.dependencies = tuple(cls.dependencies)


class ProviderPlugin(Plugin):
    """A plugin that serves completions from an LLM API."""

    kind = "provider"

    def get_provider(self) -> Any:
        """The provider object (async ``complete``, ``complete_stream``, ``capabilities``)."""
        raise NotImplementedError(f"{type(self).__name__}.get_provider() is not implemented")


class MiddlewarePlugin(Plugin):
    """A plugin that wraps the gateway's HTTP handling with pure ASGI middleware."""

    kind = "middleware"

    def get_middleware(self) -> Any:
        """A factory ``app -> app`` taking the next ASGI app and returning the wrapped one."""
        raise NotImplementedError(f"{type(self).__name__}.get_middleware() is not implemented")


class ToolPlugin(Plugin):
    """A plugin that contributes tools for function calling."""

    kind = "tool"

    def get_tools(self) -> list[Any]:
        """The tools this plugin offers."""
        raise NotImplementedError(f"{type(self).__name__}.get_tools() is not implemented")


class Context:
    """What an instance sees of the kernel: its own name, config, logger and its deps.

    Each instance gets its own context, bound to the instances of its dependencies that
    were live (or, during a reload, new) when it was created.
    """

    __slots__ = ("_deps", "_logger", "config", "kernel", "name", "version")

    def __init__(
        self,
        name: str,
        version: str,
        config: Any,
        deps: Mapping[str, Plugin],
        kernel: Any = None,
    ):
        self.name = name
        self.version = version
        self.config = config
        self.kernel = kernel
        self._logger: logging.Logger | None = None
        self._deps = dict(deps)

    @property
    def logger(self) -> logging.Logger:
        """The plugin's logger, ``helixlab.plugins.<name>``."""
        if self._logger is None:
            self._logger = logging.getLogger(f"helixlab.plugins.{self.name}")
        return self._logger

    def get(self, name: str) -> Plugin:
        """The live instance of a declared dependency."""
        try:
            return self._deps[name]
        except KeyError:
            declared = ", ".join(sorted(self._deps)) or "none"
            raise UndeclaredDependencyError(
                f"Plugin {self.name!r} asked for {name!r}, which it does not declare as a "
                f"dependency (declared: {declared}). Add it to `dependencies` or `depends_on`.",
                plugins=(self.name, name),
            ) from None

    @property
    def dependencies(self) -> Mapping[str, Plugin]:
        return dict(self._deps)

    def __repr__(self) -> str:
        return f"<Context of {self.name!r}>"


#: ``name`` or ``name>=1.0``: what packaging would parse to the same (name, specifier)
_SIMPLE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
    r"(?P<spec>(?:===|~=|==|!=|<=|>=|<|>)[0-9][0-9A-Za-z.+!*-]*)?"
)


@functools.lru_cache(maxsize=4096)  # parsed once per spec (entries cache their requires)
def parse_dependency(spec: str, owner: str = "?") -> tuple[str, str]:
    """Split ``"custom-logger>=1.0"`` into ``("custom-logger", ">=1.0")``."""
    simple = _SIMPLE.fullmatch(spec)  # the common forms, without packaging's full parser
    if simple is not None:
        return simple["name"], simple["spec"] or ""
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise RegistryError(
            f"Plugin {owner!r} declares an invalid dependency {spec!r}: {exc}"
        ) from None
    return req.name, str(req.specifier)


def check_plugin_class(cls: type) -> None:
    """Refuse classes that cannot be plugins, with the reason."""
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise RegistryError(f"{cls!r} is not a Plugin subclass.")
    if not isinstance(cls.name, str) or not cls.name.strip():
        raise RegistryError(
            f"Plugin class {cls.__qualname__} has no `name`; set a class attribute "
            f'such as name = "my-plugin".'
        )
    try:
        Version(str(cls.version))
    except InvalidVersion:
        raise RegistryError(
            f"Plugin {cls.name!r} has an invalid version {cls.version!r} (use PEP 440, "
            f'e.g. "1.0.0").'
        ) from None
    if cls.reload_strategy not in ("hot", "restart"):
        raise RegistryError(
            f"Plugin {cls.name!r} has reload_strategy {cls.reload_strategy!r}; "
            f"choose 'hot' or 'restart'."
        )
    for dep in cls.dependencies:
        parse_dependency(dep, cls.name)
