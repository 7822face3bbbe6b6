"""What the lab checks share: finding the learner's plugin, a private kernel, a stub provider.

Every lab module keeps its own checks, their descriptions and their lab-specific hints;
this module holds only the plumbing (and the few hints that read the same in every lab).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ..errors import ConfigError, HelixError, describe
from ..kernel import Kernel, Plugin, PluginState, ProviderPlugin, Timeouts
from ..llm import ChatRequest, ChatResponse, ProviderCapabilities, StreamChunk
from ._core import Missing, Probe

__all__ = [
    "answering_provider",
    "configure",
    "private_kernel",
    "registered",
    "require_active",
    "require_healthy",
    "require_not_refused",
]


def _same(text: str) -> str:
    return text


def registered(probe: Probe, name: str) -> type[Plugin]:
    """The class the notebook's ``helix`` runs under ``name``."""
    kernel = probe.kernel
    if name not in kernel and name not in probe.refused:
        known = ", ".join(kernel.names) or "none"
        raise Missing(
            f"helix has no plugin named {name!r} (registered: {known}). Run the "
            f'`%%helix plugin` cell of step 1; its class sets name = "{name}".'
        )
    return probe.fresh_class(name)


def require_not_refused(probe: Probe, name: str, *, scrub: Callable[[str], str] = _same) -> None:
    """The first thing to say when the notebook's last definition of ``name`` was refused."""
    refusal = probe.refused.get(name)
    if refusal is None:
        return
    if _stored_value_blocks(probe, name, refusal.cls):
        raise Missing(
            f"{scrub(refusal.message)} Until then, helix runs the version before it.",
            title=f"a configuration value stored earlier blocks your new {name} ({refusal.where})",
        )
    running = "; helix still runs the version before it" if name in probe.kernel else ""
    raise Missing(
        f"your last definition of {name} ({refusal.where}) was refused{running}. The "
        f"refusal said: {scrub(refusal.message)} The other checks try that last "
        f"definition: fix it and re-run its cell.",
        title=f"helix refused your last definition of {name} ({refusal.where})",
    )


def _stored_value_blocks(probe: Probe, name: str, cls: type) -> bool:
    """Whether ``cls`` takes its defaults but not the configuration ``helix`` keeps for it."""
    model = getattr(cls, "config_model", None)
    validate = getattr(model, "model_validate", None)
    if name not in probe.kernel or validate is None:
        return False
    stored = probe.kernel.entry(name).spec.config
    if not stored:
        return False
    try:
        validate({})
    except Exception:
        return False
    try:
        validate(dict(stored))
    except Exception:
        return True
    return False


def require_active(probe: Probe, name: str, *, scrub: Callable[[str], str] = _same) -> None:
    """``name`` is registered in ``helix`` and active, and its last definition was not
    refused; ``scrub`` cleans its error text."""
    registered(probe, name)
    require_not_refused(probe, name, scrub=scrub)
    state = probe.kernel.state(name)
    if state != PluginState.ACTIVE:
        info = {row.name: row for row in probe.kernel.info()}[name]
        why = f" ({scrub(info.error)})" if info.error else ""
        raise Missing(
            f"{name} is {state.value}{why}, not active. Re-run the `%%helix plugin` cell of "
            f"step 1, or `%helix load {name}`."
        )


def require_healthy(
    probe: Probe,
    name: str,
    *,
    advice: str = "look at health_check().",
    why: Callable[[BaseException], str] = describe,
    scrub: Callable[[str], str] = _same,
) -> None:
    """``name`` reports healthy in ``helix``; ``advice`` ends the hint when it does not."""
    registered(probe, name)
    try:
        status = probe.health().get(name)
    except HelixError as exc:
        raise Missing(f"the health checks could not run: {why(exc)}") from None
    if status is None:
        raise Missing(f"{name} is not running, so it has no health; see the first check.")
    if not status.healthy:
        raise Missing(f"{name} reports {scrub(str(status))}; {advice}")


def configure(
    kernel: Kernel, name: str, config: dict[str, Any], *, fix: str, shown: str | None = None
) -> None:
    """Configure ``name``; a refused config is Missing, its hint ending with ``fix``.

    ``shown`` stands for the config in the hint when its values change on every run.
    """
    try:
        kernel.configure(name, config)
    except ConfigError as exc:
        problems = "; ".join(p.message.rstrip(".") for p in exc.problems)
        raise Missing(
            f"the config {config if shown is None else shown} was refused ({problems}); {fix}"
        ) from None


def empty_config(name: str, exc: ConfigError) -> Missing:
    """The hint for a config model whose fields have no defaults (refused at load)."""
    problems = "; ".join(p.message.split(":")[0].rstrip(".") for p in exc.problems)
    return Missing(
        f"{name} cannot start with an empty config ({problems}): give every "
        f"field of its config model a default."
    )


@contextlib.contextmanager
def private_kernel(timeouts: Timeouts, *classes: type[Plugin]) -> Iterator[Kernel]:
    """A fresh kernel with ``classes`` registered (in that order), closed on the way out.

    Nothing is loaded yet: the lab configures what it needs, then calls ``load_all()``.
    """
    kernel = Kernel(timeouts=timeouts)
    try:
        for cls in classes:
            try:
                kernel.register(cls)
            except ConfigError as exc:
                raise empty_config(cls.name, exc) from None
        yield kernel
    finally:
        kernel.close()


def answering_provider(
    name: str,
    models: Iterable[str],
    content: str,
    description: str,
    calls: list[str] | None = None,
) -> type[ProviderPlugin]:
    """A provider plugin serving ``models`` that answers every request with ``content``;
    ``calls`` (when given) gets one entry per request that reached it."""
    served = tuple(models)
    seen = calls if calls is not None else []

    class _AnsweringLLM:
        def capabilities(self) -> ProviderCapabilities:
            return ProviderCapabilities(models=served)

        async def complete(self, request: ChatRequest) -> ChatResponse:
            seen.append(request.model)
            return ChatResponse(model=request.model, content=content)

        async def complete_stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
            seen.append(request.model)
            yield StreamChunk(content=content)
            yield StreamChunk(finish_reason="stop")

        async def health_check(self) -> None:
            return None

    class _Answering(ProviderPlugin):
        def get_provider(self) -> _AnsweringLLM:
            return _AnsweringLLM()

    _Answering.name = name
    _Answering.version = "1.0.0"
    _Answering.description = description
    return _Answering
