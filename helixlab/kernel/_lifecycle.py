"""The runner: the one way to start and to stop instances, each phase under its timeout.

Work is a *job*: a generator yielding requests ``(live, phase, args, timeout)`` and
receiving each phase's result. :meth:`Runner.start` and :meth:`Runner.stop` group
consecutive instances into jobs run where they cost least: inline when every phase is
skipped, on one worker thread (``_workers``) when the methods are plain, in one task on
the loop when some are ``async def``. A phase past its timeout is *abandoned*: its waiter
gets a PluginTimeoutError at once and nothing awaits it again. Any exception of a plugin,
``BaseException`` included, is a PluginError of that plugin in that phase. An abandoned
``start`` that returns later is handed to ``late_start`` (the kernel stops it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import inspect
import operator
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any

from ..errors import PluginError, PluginTimeoutError
from ._plugin import Context, Plugin
from ._registry import Entry
from ._workers import Abandoned, Interrupt, Progress, WorkerPool, settle

__all__ = ["Job", "Live", "Operation", "Runner", "Timeouts", "fresh_copy"]

#: phase name → the Plugin method it calls
PHASES = {
    "init": "init",
    "start": "start",
    "stop": "stop",
    "health": "health_check",
    "export_state": "export_state",
    "import_state": "import_state",
}
_BASE = {phase: getattr(Plugin, method) for phase, method in PHASES.items()}
_SCALARS = (str, int, float, bool, type(None), bytes)

#: a request of a job: (instance, phase, arguments, timeout)
Request = tuple[Any, str, tuple, float]
Job = Generator[Request, Any, Any]
#: where a job runs, cheapest first
_RANK = {"none": 0, "thread": 1, "loop": 2}


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


class Operation:
    """The lifecycle operation holding the kernel's lock: whether its caller was interrupted."""

    __slots__ = ("hurry", "interrupted", "task")

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


#: each class's phases, found again only when its methods change (a notebook may assign
#: one): computed per call they took two thirds of a reload of 1,000 async plugins
#: (bench_reload: ~60 of ~90 µs per plugin); held weakly, so a redefined class can go
_PHASES: weakref.WeakKeyDictionary[type, tuple[tuple, frozenset[str], frozenset[str]]]
_PHASES = weakref.WeakKeyDictionary()
_METHODS = operator.attrgetter(*PHASES.values())


def phases(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """The phases ``cls`` defines itself (the others are skipped), and which are async."""
    methods = _METHODS(cls)
    found = _PHASES.get(cls)
    if found is None or found[0] != methods:
        defined = frozenset(p for p, m in zip(PHASES, methods, strict=True) if m is not _BASE[p])
        is_async = inspect.iscoroutinefunction
        asynchronous = frozenset(p for p in defined if is_async(getattr(cls, PHASES[p])))
        found = _PHASES[cls] = (methods, defined, asynchronous)
    return found[1], found[2]


def _widest(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


def home(cls: type, wanted: tuple[str, ...]) -> str:
    """Where a job calling ``wanted`` phases of ``cls`` runs: ``none``, ``thread`` or ``loop``."""
    defined, asynchronous = phases(cls)
    if defined.isdisjoint(wanted):
        return "none"
    return "thread" if asynchronous.isdisjoint(wanted) else "loop"


def fresh_copy(value: Any) -> Any:
    """A copy an instance may change without changing anyone else's (config, state)."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if type(value) is dict and all(type(v) in _SCALARS for v in value.values()):
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
        self.plain = WorkerPool(loop, "helixlab-plain")
        self._tasks: set[asyncio.Task] = set()  # running or abandoned: referenced until done
        #: called with an instance whose abandoned ``start`` returned after all, from the
        #: worker thread or the loop task it returned in
        self.late_start = late_start

    # -- starting -------------------------------------------------------------------------

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
        """A new instance of each entry, in order, into ``new``: ``init``, ``import_state``,
        ``start``. One that replaces a ``current`` instance gets its exported state (or
        the one in ``states``, exported already: the restart strategy).

        Dependencies are bound from ``new`` before ``current``. Consecutive instances share
        a job; ``initialized(name)`` (a load's event, on the loop) splits each instance's
        job after ``init``. The first failure raises its PluginError.
        """
        steps, wheres = [], []  # each class's phases looked up once: n can be thousands
        for entry in entries:
            defined, asynchronous = phases(entry.cls)
            wanted = defined & {"init", "import_state", "start"}
            where = "none" if not wanted else "loop" if wanted & asynchronous else "thread"
            old = current.get(entry.name) if states is None else None
            exports = old is not None and "export_state" in phases(type(old.plugin))[0]
            if exports and old is not None:
                where = _widest(where, home(type(old.plugin), ("export_state",)))
            steps.append((entry, old if exports else None, defined))
            wheres.append(where)
        i = 0
        while i < len(entries):
            j, where = i, "none"  # a run of instances that can share one job's home
            while j < len(entries) and (initialized is None or j == i):
                if "none" not in (where, wheres[j]) and wheres[j] != where:
                    break
                where = _widest(where, wheres[j])
                j += 1
            made: dict[str, Live] = {}
            try:
                job = self._starting(steps[i:j], current, new, made, states, initialized)
                await self.run(job, where, interrupt=interrupt)
                if initialized is not None:
                    name, live = entries[i].name, made[entries[i].name]
                    initialized(name)
                    rest = self._phases(live, steps[i][2], ("start",), None)
                    await self.run(rest, home(entries[i].cls, ("start",)), interrupt=interrupt)
                    new[name] = live
            except BaseException:
                for name, live in made.items():
                    if new.get(name) is not live:  # failed: it keeps no dependency alive
                        live.ctx._deps.clear()
                raise
            i = j

    def _starting(
        self,
        steps: list[tuple[Entry, Live | None, frozenset[str]]],
        current: Mapping[str, Live],
        new: dict[str, Live],
        made: dict[str, Live],
        states: Mapping[str, Any] | None,
        initialized: Callable[[str], Any] | None,
    ) -> Job:
        for entry, exporting, defined in steps:
            state = states.get(entry.name) if states is not None else None
            if exporting is not None:
                state = yield (exporting, "export_state", (), self.timeouts.export_state)
            handover = states is not None or entry.name in current
            live = self.new_live(entry, current, new, handover)
            made[entry.name] = live
            if initialized is not None:
                yield from self._phases(live, defined, ("init",), None)
                return
            yield from self._phases(live, defined, ("init", "import_state", "start"), state)
            new[entry.name] = live

    def _phases(self, live: Live, defined: frozenset[str], wanted: tuple, state: Any) -> Job:
        """The ``wanted`` phases that ``live``'s class defines, in order."""
        t = self.timeouts
        if "init" in wanted and "init" in defined:
            yield (live, "init", (live.ctx, live.config), t.init)
        if "import_state" in wanted and state is not None and "import_state" in defined:
            yield (live, "import_state", (fresh_copy(state),), t.import_state)
        if "start" in wanted and "start" in defined:
            yield (live, "start", (live.ctx,), t.start)

    def new_live(
        self, entry: Entry, current: Mapping[str, Live], bound: Mapping[str, Live], handover: bool
    ) -> Live:
        """A new instance of ``entry``, its own copy of the config, bound to its dependencies."""
        deps = {d: (bound.get(d) or current[d]).plugin for d, _ in entry.requires}
        version = str(entry.cls.version)
        try:
            plugin = entry.instance if entry.instance is not None and not handover else entry.cls()
        except Exception as exc:
            raise PluginError(entry.name, "init", cause=exc, version=version) from exc
        config = fresh_copy(entry.config)  # an instance that changes its config changes its own
        return Live(plugin, Context(entry.name, version, config, deps, kernel=self.owner), config)

    # -- stopping -------------------------------------------------------------------------

    async def stop(
        self,
        lives: list[Live],
        failed: Callable[[Live, PluginError], Any],
        *,
        each: tuple[Callable[[Live], Any], Callable[[Live], Any]] | None = None,
    ) -> list[PluginError]:
        """Stop instances in this order under the stop timeout; never raises.

        A failure goes to ``failed(live, error)`` (and is returned) and the rest go on.
        Consecutive instances share a job, unless ``each = (before, after)``: then each
        instance is its own job, between ``before(live)`` and ``after(live)``.
        """
        errors = []
        todo = list(lives)
        for live in todo:
            live.stopping = True
        while todo:
            batch = todo[:1] if each else todo
            if each:
                each[0](batch[0])
            where, stops = "none", []
            for live in batch:
                defined, asynchronous = phases(type(live.plugin))
                stops.append("stop" in defined)
                if "stop" in defined:
                    where = _widest(where, "loop" if "stop" in asynchronous else "thread")
            done = [0]
            try:
                await self.run(self._stopping(batch, done, stops), where)
            except PluginError as exc:
                failed(batch[done[0]], exc)
                errors.append(exc)
                done[0] += 1
            if each:
                each[1](batch[0])
            todo = todo[len(batch) if each else done[0] :]
        return errors

    def _stopping(self, lives: list[Live], done: list[int], stops: list[bool]) -> Job:
        for live, stops_it in zip(lives, stops, strict=True):
            if stops_it:
                yield (live, "stop", (live.ctx,), self.timeouts.stop)
            done[0] += 1

    def stop_here(self, live: Live) -> PluginError | None:
        """:meth:`stop`'s job in the calling thread, no timeout: an abandoned ``start`` that
        returns once the kernel is closing (its loop may be gone)."""
        try:
            stops = ["stop" in phases(type(live.plugin))[0]]
            self._drive_thread(self._stopping([live], [0], stops), Progress(), here=True)
        except PluginError as exc:
            return exc
        return None

    # -- driving a job --------------------------------------------------------------------

    async def call(
        self, live: Live, phase: str, *args: Any, timeout: float, progress: Progress | None = None
    ) -> Any:
        """One phase of one instance (a health check, a restart's undo); ``progress.finished``
        tells, later, whether it returned."""
        where = home(type(live.plugin), (phase,))
        if where == "none" and progress is not None:
            progress.finished = True
        return await self.run(_one(live, phase, args, timeout), where, progress)

    async def run(
        self,
        job: Job,
        where: str,
        progress: Progress | None = None,
        interrupt: Interrupt | None = None,
    ) -> Any:
        """Drive ``job`` at ``where`` (``none``, ``thread`` or ``loop``); its return value.
        ``interrupt``: an event abandoning it at once, and the error its waiter then gets."""
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
        task.add_done_callback(
            lambda t: future.cancel() if t.cancelled() else settle(future, t.result())
        )
        progress.waiting = task
        watch = self.plain.watch(future, progress, timed_out, interrupt)
        try:
            return await future
        finally:
            watch.cancel()

    def _drive_thread(self, job: Job, progress: Progress, here: bool = False) -> Any:
        """On a worker thread (or, ``here``, any thread): every request of ``job`` in turn."""
        sent: Any = None
        while True:
            try:
                live, phase, args, timeout = job.send(sent)
            except StopIteration as stop:
                return stop.value
            progress.begin((live, phase), timeout)
            try:
                sent = getattr(live.plugin, PHASES[phase])(*args)
                if sent is not None and inspect.isawaitable(sent):
                    sent = asyncio.run(_guarded(sent)) if here else self._await(progress, sent)
                    if not sent[0]:
                        raise sent[1]
                    sent = sent[1]
            except Abandoned:
                raise
            except BaseException as exc:
                progress.label = None
                raise _failure(live, phase, exc) from exc
            self._ended(progress, live, phase)

    def _await(self, progress: Progress, awaitable: Any) -> tuple[bool, Any]:
        """A plain method's awaitable result, awaited on the loop from its worker thread."""
        future = asyncio.run_coroutine_threadsafe(_guarded(awaitable), self.loop)
        progress.waiting = future
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise Abandoned from None
        finally:
            progress.waiting = None

    def _ended(self, progress: Progress, live: Live, phase: str) -> None:
        try:
            progress.end()  # raises Abandoned if the watchdog gave up on this phase meanwhile
        except Abandoned:
            if phase == "start":
                self.late_start(live)
            raise

    async def _drive_loop(self, job: Job, progress: Progress) -> Any:
        """In a task of its own: every request of ``job`` in turn."""
        sent: Any = None
        while True:
            try:
                live, phase, args, timeout = job.send(sent)
            except StopIteration as stop:
                return stop.value
            if phase not in phases(type(live.plugin))[1]:  # a plain phase in an async job
                progress.begin((live, phase), timeout * 2)  # the inner watchdog fires first
                inner = Progress()
                try:
                    sent = await self.run(_one(live, phase, args, timeout), "thread", inner)
                except asyncio.CancelledError:  # this job was abandoned (an interrupt): so is
                    inner.abandoned = True  # the phase; a start that returns is stopped
                    if inner.finished and phase == "start":
                        self.late_start(live)  # it returned just before: stop it now
                    raise
                finally:
                    progress.label = None
                continue
            if progress.abandoned:
                raise Abandoned
            progress.started, progress.timeout = monotonic(), timeout
            progress.label = (live, phase)
            try:
                sent = await getattr(live.plugin, PHASES[phase])(*args)
            except BaseException as exc:
                if progress.abandoned:
                    raise Abandoned from None
                progress.label = None
                raise _failure(live, phase, exc) from exc
            self._ended(progress, live, phase)

    def close(self) -> None:
        self.plain.close()


def _one(live: Any, phase: str, args: tuple, timeout: float) -> Job:
    if phase in phases(type(live.plugin))[0]:
        return (yield (live, phase, args, timeout))
    return None


def _drive_inline(job: Job) -> Any:
    """A job whose every phase is skipped: run it here, now."""
    try:
        while True:
            job.send(None)
    except StopIteration as stop:
        return stop.value
