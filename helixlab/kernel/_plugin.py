"""The plugin model: the ``Plugin`` base class, its kinds, its states and its context; for
config models, ``PluginConfig`` and ``Duration`` (``30s``, ``500ms``, ``2m``).

A plugin is a class (the seed's ``Name()``, ``Version()``... are class attributes); its
lifecycle methods may be plain or ``async def``. It reaches another plugin only through
``ctx.get(name)``, and only if it declared it: the graph is always the truth.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import InitVar, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar

import pydantic
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from ..errors import RegistryError, UndeclaredDependencyError

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = [
    "ASGIApp",
    "Context",
    "MiddlewareFactory",
    "MiddlewarePlugin",
    "Plugin",
    "PluginState",
    "Probe",
    "ProviderPlugin",
    "ToolPlugin",
    "parse_dependency",
]

# The ASGI types a middleware speaks (starlette.types' shapes, without importing it)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: What ``MiddlewarePlugin.get_middleware`` returns: the next app in, the wrapped app out.
MiddlewareFactory = Callable[[ASGIApp], ASGIApp]

#: A plugin's validated configuration: ``Plugin[MyConfig]`` makes ``init`` receive MyConfig.
ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class Probe:
    """One request a canary sends through a reload's new chain, before the swap; it passes
    when ``expect(status)``. ``json=None`` on the chat route: one short chat completion."""

    method: str = "POST"
    path: str = "/v1/chat/completions"
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: Callable[[int], bool] = field(default=lambda status: status < 500)


class PluginState(enum.StrEnum):
    """Where a plugin is in its lifecycle."""

    REGISTERED = "registered"
    INITIALIZED = "initialized"
    ACTIVE = "active"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Plugin(Generic[ConfigT]):
    """Base class of every plugin. Override what you need; every method is optional.

    The kernel calls ``init(ctx, config)`` → ``import_state(state)`` (on a reload) →
    ``start(ctx)`` → … → ``stop(ctx)``. ``class MyPlugin(hx.Plugin[MyConfig])`` (MyConfig a
    pydantic model) sets ``config_model = MyConfig`` and types ``init``'s ``config``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    dependencies: ClassVar[tuple[str, ...]] = ()
    config_model: ClassVar[type[pydantic.BaseModel] | None] = None
    reload_strategy: ClassVar[Literal["hot", "restart"]] = "hot"
    priority: ClassVar[int] = 0
    kind: ClassVar[str] = "plugin"
    #: It guards requests (authentication): while it is not serving (failed, hung, stopped, not
    #: started yet) the gateway answers 503. The configuration can say so too (``required: true``).
    required: ClassVar[bool] = False

    def init(self, ctx: Context, config: ConfigT) -> Any:
        """Prepare the instance; ``config`` is the validated ``config_model`` (or a dict)."""

    def start(self, ctx: Context) -> Any:
        """Begin serving."""

    def stop(self, ctx: Context) -> Any:
        """Release what ``start`` acquired; called once the instance has drained."""

    def health_check(self, ctx: Context) -> Any:
        """Raise, or return False or a message string, when unhealthy."""

    def export_state(self) -> Any:
        """State to hand to the next version on a reload (None: nothing to hand over)."""

    def import_state(self, state: Any) -> Any:
        """Receive what the previous version exported; called after init, before start."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} plugin {self.name!r} {self.version}>"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bases = () if "config_model" in vars(cls) else getattr(cls, "__orig_bases__", ())
        for base in bases:  # class P(Plugin[Model]): Model is its config model
            origin, model = typing.get_origin(base), (*typing.get_args(base), None)[0]
            a_model = isinstance(model, type) and hasattr(model, "model_validate")
            if a_model and isinstance(origin, type) and issubclass(origin, Plugin):
                cls.config_model = model
                break
        deps = cls.dependencies
        cls.dependencies = (deps,) if isinstance(deps, str) else tuple(deps)


class _Probed:  # what middleware and providers share
    def probe(self) -> Iterable[Probe]:
        """What a canary sends through the new version before the swap (a chat; ``[]``: none)."""
        return [Probe()]


class ProviderPlugin(_Probed, Plugin[ConfigT]):
    """A plugin that serves completions from an LLM API."""

    kind = "provider"

    def get_provider(self) -> Any:
        """The provider object (async ``complete``, ``complete_stream``, ``capabilities``)."""
        raise NotImplementedError(f"{type(self).__name__}.get_provider() is not implemented")


class MiddlewarePlugin(_Probed, Plugin[ConfigT]):
    """A plugin that wraps the gateway's HTTP handling with pure ASGI middleware."""

    kind = "middleware"

    def get_middleware(self) -> MiddlewareFactory:
        """A factory ``app -> app`` taking the next ASGI app and returning the wrapped one."""
        raise NotImplementedError(f"{type(self).__name__}.get_middleware() is not implemented")


class ToolPlugin(Plugin[ConfigT]):
    """A plugin that contributes tools for function calling."""

    kind = "tool"

    def get_tools(self) -> list[Any]:
        """The tools this plugin offers."""
        raise NotImplementedError(f"{type(self).__name__}.get_tools() is not implemented")


@dataclass(repr=False, eq=False, slots=True)
class Context:
    """What an instance sees of the kernel: its own name, config, logger and dependencies
    (their instances live, or new in a reload, when it was created)."""

    name: str
    version: str
    config: Any
    deps: InitVar[Mapping[str, Plugin]]
    kernel: Kernel | None = None
    _deps: dict[str, Plugin] = field(init=False)

    def __post_init__(self, deps: Mapping[str, Plugin]) -> None:
        self._deps = dict(deps)

    @property
    def logger(self) -> logging.Logger:
        """The plugin's logger, ``helixlab.plugins.<name>``."""
        return logging.getLogger(f"helixlab.plugins.{self.name}")

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
    def dependencies(self) -> Mapping[str, Plugin]:  # a copy
        return dict(self._deps)

    def __repr__(self) -> str:
        return f"<Context of {self.name!r}>"


# measured: packaging parses one in 10-15 µs, as much as a reload costs per plugin
@functools.lru_cache(maxsize=4096)
def parse_dependency(spec: str, owner: str = "?") -> tuple[str, str]:
    """Split ``"custom-logger>=1.0"`` into ``("custom-logger", ">=1.0")``."""
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        why = f"declares an invalid dependency {spec!r}: {exc}"
        raise RegistryError(f"Plugin {owner!r} {why}") from None
    return req.name, str(req.specifier)


def check_plugin_class(cls: type) -> None:
    """Refuse classes that cannot be plugins, with the reason."""
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise RegistryError(f"{cls!r} is not a Plugin subclass.")
    if not isinstance(cls.name, str) or not cls.name.strip():
        why = 'has no `name`; set a class attribute such as name = "my-plugin"'
        raise RegistryError(f"Plugin class {cls.__qualname__} {why}.")
    try:
        Version(str(cls.version))
    except InvalidVersion:
        why = f'has an invalid version {cls.version!r} (use PEP 440, e.g. "1.0.0")'
        raise RegistryError(f"Plugin {cls.name!r} {why}.") from None
    if not isinstance(cls.required, bool):
        why = f"has required = {cls.required!r}; set True or False"
        raise RegistryError(f"Plugin {cls.name!r} {why}.")
    if cls.reload_strategy not in ("hot", "restart"):
        why = f"has reload_strategy {cls.reload_strategy!r}; choose 'hot' or 'restart'"
        raise RegistryError(f"Plugin {cls.name!r} {why}.")
    for dep in cls.dependencies:
        parse_dependency(dep, cls.name)


_NUMBER, _UNIT = r"(\d+(?:\.\d*)?|\.\d+)\s*", "(ms|s|m|h|d)"
_DURATION = re.compile(rf"\s*{_NUMBER}|(?:\s*{_NUMBER}{_UNIT})+\s*")  # a number, or parts
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``500ms``, ``2m``, ``1h``, ``1m30s`` or a plain number."""
    seconds = math.nan
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(_NUMBER + _UNIT + "?", value))
    if math.isnan(seconds) or seconds < 0:
        message = f"invalid duration {value!r}; use a non-negative number of seconds or a string "
        raise ValueError(message + "such as '30s', '500ms', '2m', '1h' or '1m30s'.")
    return seconds


Duration = Annotated[float, pydantic.BeforeValidator(parse_duration)]


class PluginConfig(pydantic.BaseModel):
    """Base for plugin config models: unknown keys are errors, not silently dropped."""

    model_config = pydantic.ConfigDict(extra="forbid")
