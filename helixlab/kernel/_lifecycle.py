"""The runner: the one way to start and to stop instances, each phase under its timeout.

Work is a *job*: a generator yielding ``(live, phase, args, timeout)`` and sent each
phase's result, run inline (every phase skipped), on one worker thread (plain methods) or
in one task on the loop (some ``async def``), watched (``_workers``). Any exception of a
plugin, ``BaseException`` included, is a PluginError of that plugin in that phase.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import inspect
import operator
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import PluginError, PluginTimeoutError
from ._plugin import Context, Plugin
from ._registry import Entry
from ._workers import Abandoned, Interrupt, Progress, WorkerPool, settle

__all__ = ["Live", "Operation", "Runner", "Timeouts"]

#: phase name → the Plugin method it calls
PHASES = {p: p for p in ("init", "start", "stop", "health", "export_state", "import_state")}
PHASES["health"] = "health_check"
_BASE = {phase: getattr(Plugin, method) for phase, method in PHASES.items()}
_STARTING = ("init", "import_state", "start")
_SCALARS = (str, int, float, bool, type(None), bytes)

#: where a job runs, cheapest first: inline (every phase skipped), a worker thread, a task
NONE, THREAD, LOOP = 0, 1, 2
#: a job: yields (instance, phase, arguments, timeout), is sent each phase's result
Job = Generator[tuple[Any, str, tuple, float], Any, Any]


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
    #: its stop began: it serves no more, though its generation may still hold it
    stopping: bool = False

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def version(self) -> str:
        return self.ctx.version


class Operation:
    """The lifecycle operation holding the kernel's lock: whether its caller was interrupted."""

    def __init__(self, task: asyncio.Task | None):
        self.task = task
        self.interrupted = False
        self.hurry = asyncio.Event()  # set on interrupt: a start aside or a drain gives up

    def check(self, name: str) -> None:
        """Raise the interrupt of a change before its swap, naming ``name``."""
        if self.interrupted:
            raise self.error(name)

    @staticmethod
    def error(name: str) -> PluginError:
        cause = KeyboardInterrupt("interrupted by the caller before the swap")
        return PluginError(name, "interrupt", cause=cause)


#: each class's homes, found again only when its methods change, held weakly: 0.24 µs a
#: look-up against 1.3 µs computed, up to six per async plugin of a reload (bench_reload)
_HOMES: weakref.WeakKeyDictionary[type, tuple[tuple, dict[str, int]]] = weakref.WeakKeyDictionary()
_METHODS = operator.attrgetter(*PHASES.values())


def homes(cls: type) -> dict[str, int]:
    """Where each phase ``cls`` defines itself runs (THREAD or LOOP); the others are skipped."""
    methods = _METHODS(cls)
    found = _HOMES.get(cls)
    if found is None or found[0] != methods:
        where = {
            phase: LOOP if inspect.iscoroutinefunction(method) else THREAD
            for phase, method in zip(PHASES, methods, strict=True)
            if method is not _BASE[phase]
        }
        found = _HOMES[cls] = (methods, where)
    return found[1]


def fresh_copy(value: Any) -> Any:
    """A copy an instance may change without changing anyone else's (config, state)."""
    if isinstance(value, _SCALARS):
        return value
    if type(value) is dict and all(type(v) in _SCALARS for v in value.values()):
        return dict(value)
    try:
        return copy.deepcopy(value)
    except Exception:  # not copyable (a lock, a socket): handed over as it is
        return value


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


def _one(live: Any, phase: str, args: tuple, timeout: float) -> Job:
    return (yield (live, phase, args, timeout))


class Runner:
    """Starts and stops instances in jobs (see the module docstring); one per kernel."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeouts: Timeouts,
        owner: Any,
        late_start: Callable[[Live], Any],
    ):
        self.loop = loop
        self.timeouts = timeouts
        self.owner = owner  # what a plugin's ``ctx.kernel`` is
        self.late_start = late_start  # an abandoned ``start`` returned: from its thread or task
        self.plain = WorkerPool(loop)
        self._tasks: set[asyncio.Task] = set()  # running or abandoned: referenced until done

    async def start(
        self,
        entries: list[Entry],
        current: Mapping[str, Live],
        new: dict[str, Live],
        *,
        states: Mapping[str, Any] | None = None,
        interrupt: Interrupt | None = None,
        initialized: Callable[[str], Any] | None = None,
    ) -> None:
        """A new instance of each entry, in order, into ``new`` (bound to dependencies in ``new``,
        then ``current``): init, import_state of the state its ``current`` one exports (or of
        ``states``: the restart strategy), start; ``initialized(name)`` (a load's event: one
        entry, no ``interrupt``) between init and start. A failure raises its PluginError."""
        runs: list[list[tuple[Entry, Live | None, dict[str, int]]]] = []
        run_homes: list[int] = []  # where each run's job goes: never both a thread and a task
        for entry in entries:  # each class's phases looked up once: n can be thousands
            defined = homes(entry.cls)
            old = current.get(entry.name) if states is None else None
            export = homes(type(old.plugin)).get("export_state", NONE) if old is not None else NONE
            where = max(export, *(defined.get(phase, NONE) for phase in _STARTING))
            step = (entry, old if export != NONE else None, defined)
            if runs and initialized is None and {run_homes[-1], where} != {THREAD, LOOP}:
                runs[-1].append(step)
                run_homes[-1] = max(run_homes[-1], where)
            else:
                runs.append([step])
                run_homes.append(where)
        for run, where in zip(runs, run_homes, strict=True):
            made: dict[str, Live] = {}
            try:
                job = self._starting(run, current, new, made, states, initialized is not None)
                live = await self.run(job, where, interrupt=interrupt)
                if initialized is not None:  # a load: one instance, its event after init
                    initialized(live.name)
                    await self.call(live, "start", live.ctx, timeout=self.timeouts.start)
                    new[live.name] = live
            except BaseException:
                for name, live in made.items():
                    if new.get(name) is not live:  # failed: it keeps no dependency alive
                        live.ctx._deps.clear()
                raise

    def _starting(
        self,
        steps: list[tuple[Entry, Live | None, dict[str, int]]],
        current: Mapping[str, Live],
        new: dict[str, Live],
        made: dict[str, Live],
        states: Mapping[str, Any] | None,
        init_only: bool,
    ) -> Job:
        t = self.timeouts
        for entry, exporting, defined in steps:
            state = states.get(entry.name) if states is not None else None
            if exporting is not None:
                state = yield (exporting, "export_state", (), t.export_state)
            version = str(entry.cls.version)
            try:  # a new instance: the one given to register() serves its first load only
                first = states is None and entry.name not in current
                plugin = entry.instance if first and entry.instance is not None else entry.cls()
            except BaseException as exc:  # SystemExit included: the plugin's failure
                raise PluginError(entry.name, "init", cause=exc, version=version) from exc
            config = fresh_copy(entry.config)  # its own: changing it changes nobody else's
            deps = {d: (new.get(d) or current[d]).plugin for d, _ in entry.requires}
            ctx = Context(entry.name, version, config, deps, kernel=self.owner)
            live = made[entry.name] = Live(plugin, ctx, config)
            if "init" in defined:
                yield (live, "init", (live.ctx, live.config), t.init)
            if init_only:  # a load: its start comes after its event
                return live
            if state is not None and "import_state" in defined:
                yield (live, "import_state", (fresh_copy(state),), t.import_state)
            if "start" in defined:
                yield (live, "start", (live.ctx,), t.start)
            new[entry.name] = live

    async def stop(
        self,
        lives: list[Live],
        failed: Callable[[Live, PluginError], Any],
        *,
        each: tuple[Callable[[Live], Any], Callable[[Live], Any]] | None = None,
    ) -> list[PluginError]:
        """Stop instances in this order, in one job (or each its own, between ``each``'s
        ``before(live)`` and ``after(live)``); a failure goes to ``failed(live, error)``, is
        returned, and the rest go on."""
        errors = []
        for live in lives:
            live.stopping = True
        while lives:
            batch = lives[:1] if each else lives
            if each:
                each[0](batch[0])
            where = max(homes(type(live.plugin)).get("stop", NONE) for live in batch)
            done = [0]  # how many of the batch the job is past (a failed one included)
            try:
                await self.run(self._stopping(batch, done), where)
            except PluginError as exc:
                failed(batch[done[0]], exc)
                errors.append(exc)
                done[0] += 1
            if each:
                each[1](batch[0])
            lives = lives[done[0] :]
        return errors

    def _stopping(self, lives: list[Live], done: list[int]) -> Job:
        for live in lives:
            if "stop" in homes(type(live.plugin)):
                yield (live, "stop", (live.ctx,), self.timeouts.stop)
            done[0] += 1

    def stop_here(self, live: Live) -> PluginError | None:
        """:meth:`stop`'s job in the calling thread, no timeout: an abandoned ``start`` that
        returns once the kernel is closing (its loop may be gone)."""
        try:
            self._drive_thread(self._stopping([live], [0]), Progress(), here=True)
        except PluginError as exc:
            return exc
        return None

    async def call(
        self, live: Live, phase: str, *args: Any, timeout: float, progress: Progress | None = None
    ) -> Any:
        """One phase of one instance (a health check, a restart's undo); ``progress.finished``
        tells, later, whether it returned."""
        progress = progress or Progress()
        where = homes(type(live.plugin)).get(phase, NONE)
        if where == NONE:
            progress.finished = True
            return None
        return await self.run(_one(live, phase, args, timeout), where, progress)

    async def run(
        self,
        job: Job,
        where: int,
        progress: Progress | None = None,
        interrupt: Interrupt | None = None,
    ) -> Any:
        """Drive ``job`` at ``where``; its return value. ``interrupt``: an event abandoning
        it at once, and the error its waiter then gets."""
        progress = progress or Progress()
        if where == NONE:  # every phase skipped: it calls nothing
            return self._drive_thread(job, progress, here=True)
        if where == THREAD:
            drive = functools.partial(self._drive_thread, job, progress)
            return await self.plain.run(drive, progress, timed_out, interrupt)
        future = self.loop.create_future()
        task = progress.waiting = self.loop.create_task(self._drive_loop(job, progress, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await progress.watch(future, timed_out, interrupt)

    def _drive_thread(self, job: Job, progress: Progress, here: bool = False) -> Any:
        """On a worker thread (or, ``here``, in any thread): every request of ``job`` in turn."""
        sent: Any = None
        try:
            while True:
                live, phase, args, timeout = job.send(sent)
                progress.begin((live, phase), timeout)
                try:
                    sent = getattr(live.plugin, PHASES[phase])(*args)
                    if sent is not None and inspect.isawaitable(sent):
                        sent = self._resolve(sent, progress, here)
                except BaseException as exc:
                    raise self._failed(progress, live, phase, exc) from exc
                self._ended(progress, live, phase)
        except StopIteration as stop:
            return stop.value

    def _resolve(self, awaitable: Any, progress: Progress, here: bool) -> Any:
        """What a plain method's awaitable comes to: awaited here, or on the loop (waited for)."""
        if here:
            ok, result = asyncio.run(_guarded(awaitable))
        else:
            future = asyncio.run_coroutine_threadsafe(_guarded(awaitable), self.loop)
            progress.waiting = future
            try:
                ok, result = future.result()
            except concurrent.futures.CancelledError:
                raise Abandoned from None
            finally:
                progress.waiting = None
        if not ok:
            raise result
        return result

    async def _drive_loop(self, job: Job, progress: Progress, future: asyncio.Future) -> None:
        """In a task of its own: every request of ``job`` in turn; its ending settles ``future``."""
        sent: Any = None
        try:
            while True:
                live, phase, args, timeout = job.send(sent)
                if homes(type(live.plugin)).get(phase, THREAD) == THREAD:  # plain, in an async job
                    progress.begin((live, phase), timeout * 2)  # the inner watchdog fires first
                    inner = Progress()
                    try:
                        sent = await self.run(_one(live, phase, args, timeout), THREAD, inner)
                    except asyncio.CancelledError:  # this job was abandoned (an interrupt): so
                        inner.abandoned = True  # is the phase; a start that returns is stopped
                        if inner.finished and phase == "start":
                            self.late_start(live)  # it returned just before: stop it now
                        raise
                    progress.label = None
                    continue
                progress.begin((live, phase), timeout)
                try:
                    sent = await getattr(live.plugin, PHASES[phase])(*args)
                except BaseException as exc:
                    raise self._failed(progress, live, phase, exc) from exc
                self._ended(progress, live, phase)
        except StopIteration as stop:
            result: tuple[bool, Any] = (True, stop.value)
        except BaseException as exc:
            result = (False, exc)
        progress.finished = True
        settle(future, result)

    @staticmethod
    def _failed(progress: Progress, live: Live, phase: str, exc: BaseException) -> BaseException:
        """What a phase that raised ends its job with: the plugin's failure, or Abandoned."""
        if progress.abandoned:  # the watchdog gave up on it (the raise may be its cancel)
            return Abandoned()
        progress.label = None
        if isinstance(exc, PluginError):
            return exc
        return PluginError(live.name, phase, cause=exc, version=live.version)

    def _ended(self, progress: Progress, live: Live, phase: str) -> None:
        progress.label = None
        if progress.abandoned:  # the watchdog gave up on this phase meanwhile
            if phase == "start":
                self.late_start(live)
            raise Abandoned
