"""A change of the live set as a transaction split at its swap: prepare, then commit or abort.

:class:`Transaction` is the one code path of every change that restarts plugins
(``reload``, ``configure``, ``apply_config``, ``define``):

- :meth:`Transaction.prepare` starts the new instances aside, in dependency order, each
  bound to the new instances of its dependencies, with the old one's exported state, and
  builds the next generation (the gateway's chain). ``restart`` plugins stop their old
  instance first. A failure, or an interrupt, rolls back and raises ``ReloadError``.
- :meth:`Transaction.commit` swaps the generation (one reference), drains the old one
  (bounded by ``Timeouts.drain``) and stops the old instances, dependents first.
- :meth:`Transaction.abort` rolls back exactly as a failed prepare does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PluginError, PluginTimeoutError, ReloadError, describe
from . import _loader
from ._book import Book
from ._graph import DependencyGraph
from ._lifecycle import Live, Operation, Runner
from ._live import Generation, LivePool
from ._registry import Registry
from ._reports import ReloadReport

__all__ = ["Plan", "Transaction", "load_new"]

#: ``finish(report, op)``: what a change does after its swap (events, loading new plugins)
Finish = Callable[[ReloadReport, Operation], Awaitable[None]]


@dataclass
class Plan:
    """What a reload will do: the proposed registry, the cascade and what it will load."""

    targets: list[str]
    registry: Registry
    graph: DependencyGraph
    order: list[str]  # running plugins to replace, dependencies first
    load: list[str] = field(default_factory=list)  # not running: loaded after the swap


class Transaction:
    """One change of the live set, prepared aside, then committed or aborted."""

    def __init__(
        self,
        book: Book,
        pool: LivePool,
        runner: Runner,
        plan: Plan | None,
        registry: Registry,
        finish: Finish | None = None,
    ):
        self.book, self.pool, self.runner = book, pool, runner
        self.plan = plan  # None: nothing running is restarted (only the registry changes)
        self.registry = registry
        self.finish = finish
        targets = list(plan.targets) if plan is not None else []
        self.report = ReloadReport(targets=targets, order=list(plan.order) if plan else [])
        self.state = "new"  # -> prepared -> committed | aborted
        self._new: dict[str, Live] = {}
        self._stopped_first: list[str] = []
        self._generation: Generation | None = None
        self._old_gen = pool.current
        self._t0 = self._t_started = time.perf_counter()

    # -- prepare ----------------------------------------------------------------------

    async def prepare(self, op: Operation) -> None:
        """Start the new set aside and build its generation; on failure roll back and raise."""
        plan, book = self.plan, self.book
        if plan is None:
            self.state = "prepared"
            return
        current, report = self._old_gen.live, self.report
        order, registry = plan.order, plan.registry
        entries = [registry[name] for name in order]
        for name, entry in zip(order, entries, strict=True):
            report.versions[name] = (current[name].version, str(entry.cls.version))
            book.note(
                "reloading",
                name,
                "target" if name in plan.targets else f"cascade from {', '.join(plan.targets)}",
                version=current[name].version,
            )
            if "restart" in (entry.cls.reload_strategy, type(current[name].plugin).reload_strategy):
                report.strategy[name] = "restart"
        for name in plan.load:
            report.versions[name] = ("-", str(registry[name].cls.version))

        def interrupted(label: Any) -> PluginError:  # the start aside in flight is abandoned
            return op.error(label[0].name if label else next(n for n in order if n not in new))

        new = self._new
        try:
            i = 0
            while i < len(order):
                op.check(order[i])
                if order[i] in report.strategy:
                    await self._restart(op, order[i])
                    i += 1
                    continue
                j = i + 1
                while j < len(order) and order[j] not in report.strategy:
                    j += 1
                try:  # a run of hot plugins: started aside, each as its old one exports
                    interrupt = (op.hurry, interrupted)
                    await self.runner.start(entries[i:j], current, new, interrupt=interrupt)
                finally:
                    report.started.extend(n for n in order[i:j] if n in new)
                i = j
            op.check(order[-1] if order else "kernel")
            self._t_started = time.perf_counter()
            self._generation = self.pool.build({**current, **new}, plan.graph)
            # a canary (the gateway's verify) may refuse the new set before any swap
            await self.pool.verify(self._generation, dict(zip(order, entries, strict=True)))
        except Exception as exc:
            error = (
                exc if isinstance(exc, PluginError) else PluginError("gateway", "swap", cause=exc)
            )
            await self._rollback(error)
            raise self._rolled_back_error(error) from error.cause
        self.state = "prepared"

    async def _restart(self, op: Operation, name: str) -> None:
        """A ``restart`` plugin: export its state, stop the old instance, start the new one."""
        old, runner = self._old_gen.live[name], self.runner
        state = await runner.call(old, "export_state", timeout=runner.timeouts.export_state)
        op.check(name)
        errors = await runner.stop([old], self.book.stop_failed)
        if not errors or isinstance(errors[0], PluginTimeoutError):
            # one that hung may still be stopping it: the rollback takes it out of service
            self._stopped_first.append(name)
        else:
            old.stopping = False  # a stop that raised left the instance serving
        if errors:
            raise errors[0]
        op.check(name)
        entry = self.registry[name]
        await runner.start([entry], self._old_gen.live, self._new, states={name: state})
        self.report.started.append(name)

    def _rolled_back_error(self, error: PluginError) -> ReloadError:
        report = self.report
        return ReloadError(
            error.plugin,
            error.phase,
            f"Reload of {', '.join(report.targets)} rolled back: plugin {error.plugin!r} "
            f"failed in {error.phase}: {str(report.error).rstrip('.')}. The old versions "
            f"keep serving.",
            cause=error.cause,
            version=error.version,
            report=report,
        )

    async def _rollback(self, error: PluginError) -> None:
        """Stop the new instances (dependents first), restart what ``restart`` plugins stopped."""
        book, pool, runner, report = self.book, self.pool, self.runner, self.report
        current = self._old_gen.live
        await runner.stop([self._new[n] for n in reversed(list(self._new))], book.stop_failed)
        for name in reversed(self._stopped_first):
            old = current[name]
            stop_hung = error.phase == "stop" and isinstance(error, PluginTimeoutError)
            try:
                if name == error.plugin and stop_hung:
                    # its stop may still be running: it cannot be started again safely, so
                    # it goes out of service with what needs it
                    raise error
                await runner.call(old, "start", old.ctx, timeout=runner.timeouts.start)
                old.stopping = False  # started again: it serves as before
            except PluginError as exc:  # neither version runs: out of service, with its users
                book.failed(name, exc)
                await _loader.unload(book, pool, runner, name, dead=True)
        self._new.clear()
        self.state = "aborted"
        report.rolled_back = True
        record_failure(book, report, error)
        report.timings["total"] = time.perf_counter() - self._t0
        version = error.version or ""
        book.note("reload_failed", error.plugin, f"in {error.phase}", report.error, version)
        for name in self.plan.order if self.plan else ():
            if name in pool.current.live:
                book.note("rolled_back", name, version=current[name].version)

    # -- commit / abort -------------------------------------------------------------------

    async def abort(self, op: Operation, reason: str) -> ReloadReport:
        """Roll back a prepared transaction; the old set keeps serving, as after a failure."""
        if self.state != "prepared":
            raise ReloadError("kernel", "abort", f"Cannot abort a reload that is {self.state}.")
        if self.plan is None:
            self.state = "aborted"
            self.report.rolled_back = True
            self.report.error = reason
            return self.report
        target = self.plan.targets[0] if self.plan.targets else "kernel"
        await self._rollback(PluginError(target, "abort", cause=RuntimeError(reason)))
        return self.report

    async def commit(self, op: Operation) -> ReloadReport:
        """Swap, drain the old generation, stop the old instances; then ``finish``."""
        if self.state != "prepared":
            raise ReloadError("kernel", "commit", f"Cannot commit a reload that is {self.state}.")
        book, pool, plan, report = self.book, self.pool, self.plan, self.report
        self.state = "committed"
        book.registry = self.registry
        if plan is not None and self._generation is not None:
            current = self._old_gen.live
            pool.swap(self._generation)  # -- the swap: one reference --
            _rebind(self._generation.live, self._new)
            book.last_cascade = tuple(plan.order)  # before the events: views redraw on them
            t_swapped = time.perf_counter()
            for name in plan.order:
                book.reloaded(name, *report.versions[name])
            drained = await pool.drain(self._old_gen, self.runner.timeouts.drain, hurry=op)
            if not drained:
                why = (
                    "drain cut short by an interrupt"
                    if op.interrupted
                    else f"drain timed out after {self.runner.timeouts.drain:g}s"
                )
                book.note("stopping", ", ".join(plan.targets), f"{why}; stopping old instances")
            t_drained = time.perf_counter()
            stopping = [n for n in reversed(plan.order) if n not in self._stopped_first]
            await self.runner.stop([current[n] for n in stopping], book.stop_failed)
            report.stopped.extend(reversed(plan.order))
            report.timings.update(
                start=self._t_started - self._t0,
                swap=t_swapped - self._t_started,
                drain=t_drained - t_swapped,
                stop=time.perf_counter() - t_drained,
            )
            if plan.load:
                await load_new(book, self.pool, self.runner, op, plan.load, plan.targets, report)
        if self.finish is not None:
            await self.finish(report, op)
        report.timings["total"] = time.perf_counter() - self._t0
        return report


def _rebind(live: Mapping[str, Live], new: Mapping[str, Live]) -> None:
    """Point the contexts of running plugins outside the cascade at the new instances.

    Only a reload without cascade leaves such dependents; what they stored from
    ``ctx.get`` earlier still refers to the old instance.
    """
    for name, entry in live.items():
        if name not in new:
            for dep in entry.ctx._deps.keys() & new.keys():
                entry.ctx._deps[dep] = new[dep].plugin


async def load_new(
    book: Book,
    pool: LivePool,
    runner: Runner,
    op: Operation,
    names: list[str],
    targets: list[str],
    report: ReloadReport,
) -> None:
    """Load plugins that were not running; raise ReloadError if one of ``targets`` failed.

    They join ``book.last_cascade`` before their first event (a view redrawn on events
    reads it)."""
    todo = _loader.to_load(book, pool, names)
    book.last_cascade += tuple(n for n in todo if n not in book.last_cascade)
    loaded = await _loader.load(book, pool, runner, todo, op)
    report.loaded.extend(n for n in loaded.order if n not in report.loaded)
    failed = [n for n in targets if n in loaded.failed]
    if failed:
        error = loaded.failed[failed[0]]
        record_failure(book, report, error)
        raise ReloadError(
            error.plugin,
            error.phase,
            f"Plugin {error.plugin!r} {error.version} was registered but failed in "
            f"{error.phase}: {report.error}",
            cause=error.cause,
            version=error.version,
            report=report,
        ) from error.cause


def record_failure(book: Book, report: ReloadReport, error: PluginError) -> None:
    """Put what failed, where, and why (secrets masked) into the report."""
    cause = describe(error.cause) if error.cause is not None else str(error)
    report.error = book.mask(cause)
    report.phase, report.plugin = error.phase, error.plugin
