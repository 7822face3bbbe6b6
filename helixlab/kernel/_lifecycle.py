"""Running lifecycle phases of instances: plain or async, each under its timeout.

Work is described as a *job*: a generator yielding requests ``(live, phase, args,
timeout)`` and receiving each phase's result (see ``_loader.start_steps``). The
:class:`Runner` drives a job where it costs least:

- every phase skipped (the plugin does not override it): inline, nothing to wait for;
- only plain methods: the whole job on one worker thread (``_workers``), one hop for
  many calls, with a watchdog per phase;
- some ``async def`` methods: the whole job in one task of its own on the loop (a plain
  method inside it still goes to a worker thread).

Either way a phase that overruns its timeout is *abandoned*: its waiter gets a
:class:`PluginTimeoutError` naming the plugin and phase at once, the job does nothing
more, and nothing awaits it again (an async method that swallows ``CancelledError``
cannot hold the kernel). Any exception a plugin method raises, ``BaseException``
included (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``), is a
:class:`PluginError` of that plugin in that phase: it never reaches the loop.

An abandoned ``start`` that does return later leaves an instance that may be running
(threads, sockets) but serves nobody: the runner hands it to ``late_start``, where it
returned (the kernel stops it: see ``Kernel._started_late``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from time import monotonic
from typing import Any

from ..errors import PluginError, PluginTimeoutError
from ._plugin import Context, Plugin
from ._workers import Abandoned, Interrupt, Progress, WorkerPool

__all__ = [
    "Job",
    "Live",
    "Runner",
    "Timeouts",
    "call_phase",
    "fresh_copy",
    "home",
    "overridden",
    "overrides",
    "widest",
]

#: phase name → the Plugin method it calls
PHASES = {
    "init": "init",
    "start": "start",
    "stop": "stop",
    "health": "health_check",
    "export_state": "export_state",
    "import_state": "import_state",
}

#: a request of a job: (instance, phase, arguments, timeout)
Request = tuple[Any, str, tuple, float]
Job = Generator[Request, Any, Any]


@dataclass(frozen=True)
class Timeouts:
    """Seconds each phase may take before it counts as hung."""

    init: float = 10.0
    start: float = 10.0
    stop: float = 10.0
    health: float = 2.0
    export_state: float = 5.0
    import_state: float = 5.0
    drain: float = 30.0


@dataclass(slots=True)
class Live:
    """A running instance with what it was created from (one per instance and reload)."""

    plugin: Plugin
    ctx: Context
    config: Any
    #: its stop began: it no longer serves, though its generation may still hold it (a
    #: ``restart`` plugin is stopped before its new instance starts)
    stopping: bool = False

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def version(self) -> str:
        return self.ctx.version


def overrides(plugin: Plugin, method: str) -> bool:
    """Whether the plugin's class defines ``method`` itself (the base ones do nothing)."""
    return getattr(type(plugin), method) is not getattr(Plugin, method)


_BASE = {phase: getattr(Plugin, method) for phase, method in PHASES.items()}
_SCALARS = (str, int, float, bool, type(None), bytes)


#: where a job runs, cheapest first
HOMES = ("none", "thread", "loop")
_RANK = {where: rank for rank, where in enumerate(HOMES)}


def widest(*wheres: str) -> str:
    """The home that can run every one of ``wheres`` (a loop job can call plain methods)."""
    widest_so_far = "none"
    for where in wheres:  # a reload asks once or twice per plugin: no max(key=...) here
        if _RANK[where] > _RANK[widest_so_far]:
            widest_so_far = where
    return widest_so_far


def home(plugin_class: type, phases: tuple[str, ...]) -> str:
    """Where a job calling ``phases`` of this class runs: ``none``, ``thread`` or ``loop``."""
    defined, asynchronous, homes = _phases(plugin_class)
    where = homes.get(phases)  # asked per plugin and reload: answered once per class
    if where is None:
        if defined.isdisjoint(phases):
            where = "none"
        else:
            where = "thread" if asynchronous.isdisjoint(phases) else "loop"
        homes[phases] = where
    return where


def overridden(plugin_class: type) -> frozenset[str]:
    """The phases this class defines itself (the others are skipped)."""
    return _phases(plugin_class)[0]


def _async_phases(plugin_class: type) -> frozenset[str]:
    """The phases this class defines with ``async def``."""
    return _phases(plugin_class)[1]


#: the attribute a plugin class keeps its phases in (its own ``__dict__``, not inherited;
#: fingerprints leave it out)
PHASES_ATTR = "__helix_phases__"


def _phases(plugin_class: type) -> tuple[frozenset[str], frozenset[str], dict[tuple, str]]:
    """(phases defined, phases defined with ``async def``, the homes :func:`home` found),
    computed once per class."""
    found = plugin_class.__dict__.get(PHASES_ATTR)
    if found is None:
        defined = frozenset(
            phase
            for phase, method in PHASES.items()
            if getattr(plugin_class, method) is not _BASE[phase]
        )
        asynchronous = frozenset(
            phase
            for phase in defined
            if inspect.iscoroutinefunction(getattr(plugin_class, PHASES[phase]))
        )
        found = (defined, asynchronous, {})
        with contextlib.suppress(TypeError, AttributeError):  # a class that refuses attributes
            type.__setattr__(plugin_class, PHASES_ATTR, found)
    return found


def fresh_copy(value: Any) -> Any:
    """A copy an instance may change without changing anyone else's (config, state)."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if type(value) is dict and (not value or all(type(v) in _SCALARS for v in value.values())):
        return dict(value)
    copier = getattr(value, "model_copy", None)  # a pydantic model
    try:
        if copier is not None:
            fields = getattr(value, "__dict__", {})
            return copier(deep=not all(type(v) in _SCALARS for v in fields.values()))
        return copy.deepcopy(value)
    except Exception:  # not copyable (a lock, a socket): handed over as it is
        return value


def _failure(live: Any, phase: str, exc: BaseException) -> PluginError:
    if isinstance(exc, PluginError):
        return exc
    return PluginError(live.name, phase, cause=exc, version=live.version)


def timed_out(label: tuple[Any, str], timeout: float) -> PluginTimeoutError:
    live, phase = label
    return PluginTimeoutError(
        live.name,
        phase,
        f"Plugin {live.name!r} {live.version} did not finish {phase} within {timeout:g}s.",
        cause=TimeoutError(f"no answer within {timeout:g}s"),  # what reports show
        version=live.version,
    )


async def _guarded(awaitable: Any) -> tuple[bool, Any]:
    """Await in a task of its own without letting anything escape to the loop."""
    try:
        return True, await awaitable
    except BaseException as exc:
        return False, exc


class Runner:
    """Drives jobs of lifecycle phases (see the module docstring); one per kernel."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str = "helixlab-plain",
        late_start: Callable[[Live], Any] | None = None,
    ):
        self.loop = loop
        self.plain = WorkerPool(loop, name)
        self._tasks: set[asyncio.Task] = set()  # running or abandoned: referenced until done
        #: called with an instance whose abandoned ``start`` returned after all, from the
        #: worker thread or the loop task it returned in
        self.late_start = late_start

    # -- one phase ----------------------------------------------------------------------

    async def call(
        self, live: Live, phase: str, *args: Any, timeout: float, progress: Progress | None = None
    ) -> Any:
        """One phase of one instance; errors become PluginError(plugin, phase).

        ``progress.finished`` tells, later, whether the call has really returned.
        """
        method = getattr(type(live.plugin), PHASES[phase])
        if method is _BASE[phase]:
            if progress is not None:
                progress.finished = True
            return None
        where = "loop" if inspect.iscoroutinefunction(method) else "thread"
        return await self.run(_one(live, phase, args, timeout), where, progress)

    # -- a job --------------------------------------------------------------------------

    async def run(
        self,
        job: Job,
        where: str,
        progress: Progress | None = None,
        interrupt: Interrupt | None = None,
    ) -> Any:
        """Drive ``job`` at ``where`` (``none``, ``thread`` or ``loop``); its return value.

        ``interrupt``: an event that abandons the job at once, as a timeout would, and the
        error its waiter then gets.
        """
        if where == "none":
            return _drive_inline(job)
        progress = progress or Progress()
        if where == "thread":
            return await self.plain.run(
                lambda p: self._drive_thread(job, p), timed_out, progress, interrupt
            )
        task = self.loop.create_task(_guarded(self._drive_loop(job, progress)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: setattr(progress, "finished", True))
        future = self.loop.create_future()
        task.add_done_callback(lambda t: _settle_task(future, t))
        progress.waiting = task
        watch = self.plain.watch(future, progress, timed_out, interrupt)
        try:
            return await future
        finally:
            watch.cancel()

    def _drive_thread(self, job: Job, progress: Progress) -> Any:
        """On a worker thread: every request of ``job`` in turn."""
        sent: Any = None
        send, call = job.send, self._call_here
        while True:
            try:
                request = send(sent)
            except StopIteration as stop:
                return stop.value
            sent = call(progress, request)

    def _call_here(self, progress: Progress, request: Request) -> Any:
        """One phase on this worker thread; an awaitable result is awaited on the loop."""
        live, phase, args, timeout = request  # jobs request only phases a class defines
        method = getattr(live.plugin, PHASES[phase])
        progress.begin((live, phase), timeout)
        try:
            result = method(*args)
            if result is not None and inspect.isawaitable(result):
                future = asyncio.run_coroutine_threadsafe(_guarded(result), self.loop)
                progress.waiting = future
                try:
                    ok, result = future.result()
                except concurrent.futures.CancelledError:
                    raise Abandoned from None
                finally:
                    progress.waiting = None
                if not ok:
                    raise result
        except Abandoned:
            raise
        except BaseException as exc:
            progress.label = None
            raise _failure(live, phase, exc) from exc
        try:
            progress.end()  # raises Abandoned if the watchdog gave up on this phase meanwhile
        except Abandoned:
            if phase == "start":
                self._started_late(live)
            raise
        return result

    async def _drive_loop(self, job: Job, progress: Progress) -> Any:
        """In a task of its own: every request of ``job`` in turn."""
        sent: Any = None
        while True:
            try:
                request = job.send(sent)
            except StopIteration as stop:
                return stop.value
            live, phase, args, timeout = request  # jobs request only phases a class defines
            plugin = live.plugin
            if phase not in _phases(type(plugin))[1]:  # a plain phase in an async job
                progress.begin((live, phase), timeout * 2)  # the inner watchdog fires first
                inner = Progress()
                try:
                    sent = await self.run(_one(live, phase, args, timeout), "thread", inner)
                except asyncio.CancelledError:  # this job was abandoned (an interrupt): so is
                    inner.abandoned = True  # the phase; a start that returns is stopped
                    if inner.finished and phase == "start":
                        self._started_late(live)  # it returned just before: stop it now
                    raise
                finally:
                    progress.label = None
                continue
            if progress.abandoned:
                raise Abandoned
            progress.started, progress.timeout = monotonic(), timeout
            progress.label = (live, phase)
            try:
                sent = await getattr(plugin, PHASES[phase])(*args)
            except BaseException as exc:
                if progress.abandoned:
                    raise Abandoned from None
                progress.label = None
                raise _failure(live, phase, exc) from exc
            try:
                progress.end()
            except Abandoned:
                if phase == "start":
                    self._started_late(live)
                raise

    def _started_late(self, live: Live) -> None:
        if self.late_start is not None:
            self.late_start(live)

    def stop_here(self, live: Live) -> PluginError | None:
        """Stop ``live`` in the calling thread, with no timeout; its error, if any.

        For an abandoned ``start`` that returns once the kernel is closing: its loop may
        be gone, and the thread it returned in serves nobody else, so a hang here holds
        nothing. An ``async def stop`` runs on a loop of its own.
        """
        if getattr(type(live.plugin), PHASES["stop"]) is _BASE["stop"]:
            return None
        try:
            result = live.plugin.stop(live.ctx)
            if result is not None and inspect.isawaitable(result):
                ok, result = asyncio.run(_guarded(result))
                if not ok:
                    raise result
        except BaseException as exc:
            return _failure(live, "stop", exc)
        return None

    def close(self) -> None:
        self.plain.close()


def _one(live: Any, phase: str, args: tuple, timeout: float) -> Job:
    return (yield (live, phase, args, timeout))


def _drive_inline(job: Job) -> Any:
    """A job whose every phase is skipped: run it here, now."""
    try:
        job.send(None)
        while True:
            job.send(None)
    except StopIteration as stop:
        return stop.value


def _settle_task(future: asyncio.Future, task: asyncio.Task) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
        return
    ok, value = task.result()
    if ok:
        future.set_result(value)
    elif isinstance(value, Abandoned | asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(value)


async def call_phase(live: Live, phase: str, *args: Any, timeout: float) -> Any:
    """Call one phase of ``live`` with its kernel's runner (see :meth:`Runner.call`)."""
    return await live.ctx.kernel._runner.call(live, phase, *args, timeout=timeout)
