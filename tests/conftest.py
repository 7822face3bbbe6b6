"""Tiny factories shared by the tests: plugin classes made with ``type()``, kernels."""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

import helixlab as hx

from _fleet_support import redis_server  # noqa: F401  (the fixture, for every fleet test)

# No per-example wall-clock deadline: on a loaded 2-core machine one example can take
# longer than hypothesis's 200 ms without anything being wrong (each test bounds its own
# waits, and pytest-timeout bounds the test).
settings.register_profile("helixlab", deadline=None)
settings.load_profile("helixlab")

# The interrupt tests press Jupyter's interrupt button (a real SIGINT). A run started in the
# background of a shell without job control (`make test &`, nohup) inherits SIGINT ignored,
# and so would every kernel and grader it starts: Python's own handler, as a terminal has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Short enough that a hung phase fails a test quickly, long enough for a slow CI worker.
FAST = hx.Timeouts(init=2, start=2, stop=2, health=0.5, export_state=2, import_state=2, drain=5)


class Journal(list):
    """Every recorded lifecycle call as ``(phase, plugin, version)``, in call order."""

    def phases(self, phase: str) -> list[str]:
        return [name for p, name, _ in self if p == phase]


def _recording(journal: Journal, phase: str) -> Callable[..., Any]:
    async def method(self: hx.Plugin, *args: Any) -> None:
        journal.append((phase, self.name, self.version))

    return method


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def make_plugin(journal: Journal) -> Callable[..., type[hx.Plugin]]:
    """``make_plugin("b", deps=("a",), version="2.0", start=fn)``: a fresh Plugin subclass.

    ``init``, ``start`` and ``stop`` record themselves in ``journal`` unless given; any other
    keyword becomes a class attribute (methods, ``reload_strategy``, ``config_model``...).
    """

    def make(
        name: str,
        deps: tuple[str, ...] = (),
        version: str = "1.0.0",
        *,
        base: type[hx.Plugin] = hx.Plugin,
        **attrs: Any,
    ) -> type[hx.Plugin]:
        namespace = {phase: _recording(journal, phase) for phase in ("init", "start", "stop")}
        namespace.update(name=name, version=version, dependencies=tuple(deps), **attrs)
        return type(f"Plugin_{name.replace('-', '_')}", (base,), namespace)

    return make


@pytest.fixture
def make_kernel(make_helix_kernel: Callable[..., hx.Kernel]) -> Callable[..., hx.Kernel]:
    """``make_kernel(timeouts={"drain": 0.2}, loop="uvloop")``: a kernel, closed after the test.

    helixlab's own ``make_helix_kernel`` (helixlab.testing.plugin), with ``FAST`` in place
    of the default timeouts: ``timeouts`` is a :class:`~helixlab.Timeouts`, or a dict of
    overrides of ``FAST``; ``config`` is applied as by ``Kernel.from_config``; any other
    keyword goes to ``Kernel``.
    """

    def make(
        config: Any = None, *, timeouts: hx.Timeouts | dict[str, float] | None = None, **kwargs: Any
    ) -> hx.Kernel:
        if not isinstance(timeouts, hx.Timeouts):
            timeouts = dataclasses.replace(FAST, **(timeouts or {}))
        return make_helix_kernel(config, timeouts=timeouts, **kwargs)

    return make


@pytest.fixture
def kernel(make_kernel: Callable[..., hx.Kernel]) -> hx.Kernel:
    """A kernel with the ``FAST`` timeouts, closed after the test."""
    return make_kernel()


@pytest.fixture
def seen(kernel: hx.Kernel) -> Callable[..., threading.Event]:
    """``seen("reloaded", "a")``: an Event set once the kernel emits that event."""

    def waiter(kind: str, plugin: str | None = None) -> threading.Event:
        event = threading.Event()

        def check(e: hx.PluginEvent) -> None:
            if e.kind == kind and plugin in (None, e.plugin):
                event.set()

        kernel.subscribe(check)
        return event

    return waiter


#: The course's configs/plugins.yaml (Module 1.3), verbatim.
SEED = """\
# configs/plugins.yaml
plugins:
  custom-provider:
    enabled: true
    priority: 10
    config:
      api_url: "https://api.custom.ai"
      timeout: 30s
      retry_count: 3

  rate-limiter:
    enabled: true
    config:
      requests_per_minute: 100
      burst_size: 20

  custom-logger:
    enabled: true
    depends_on:
      - rate-limiter
    config:
      log_level: debug
      format: json
"""
