"""A change of the live set as a transaction split at its swap, the one code path of every
change that restarts plugins: ``prepare`` starts the new instances aside (``restart`` plugins
stop their old one first) and builds the next generation; ``commit`` swaps it in, drains the
old one and stops its instances, what the change registers loaded after; a failure rolls back.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from ..errors import PluginError, PluginTimeoutError, ReloadError, describe
from . import _loader
from ._book import Book
from ._config import PluginSpec
from ._lifecycle import Live, Operation, Runner
from ._live import Generation, LivePool
from ._registry import Registry
from ._reports import ReloadReport

__all__ = ["Plan", "Transaction"]


@dataclass
class Plan:
    """What a reload will do: the proposed registry, the cascade and what it will load."""

    targets: list[str]
    registry: Registry
    order: list[str]  # running plugins to replace, dependencies first
    load: list[str]  # not running: loaded after the swap


class Transaction:
    def __init__(
        self, book: Book, pool: LivePool, runner: Runner, plan: Plan | None, registry: Registry
    ):
        self.book, self.pool, self.runner = book, pool, runner
        self.plan = plan  # None: nothing running is restarted (only the registry changes)
        self.registry = registry
        # what the change does after its swap: events, configurations kept, plugins loaded
        self.registered: dict[str, str] = {}  # name -> the event's detail
        self.configured: dict[str, str] = {}
        self.pending: dict[str, PluginSpec] = {}  # kept until a class of that name registers
        self.new: list[str] = []  # registered by this change, loaded after the swap
        targets, order = (list(plan.targets), list(plan.order)) if plan else ([], [])
        self.report = ReloadReport(targets=targets, order=order)
        self.state = "new"  # -> prepared -> committed | aborted
        self._new: dict[str, Live] = {}
        self._stopped_first: list[str] = []
        self._generation: Generation | None = None
        self._old_gen = pool.current
        self._t0 = self._t_lap = time.perf_counter()

    def _lap(self, step: str) -> None:
        """Time ``step``: from the end of the step before it (or the start) to now."""
        now = time.perf_counter()
        self.report.timings[step], self._t_lap = now - self._t_lap, now

    async def prepare(self, op: Operation) -> None:
        plan, report, current, new = self.plan, self.report, self._old_gen.live, self._new
        if plan is None:
            self.state = "prepared"
            return
        order, registry = plan.order, plan.registry
        for name in order:
            cls, version = registry[name].cls, current[name].version
            report.versions[name] = (version, str(cls.version))
            why = "target" if name in plan.targets else f"cascade from {', '.join(plan.targets)}"
            self.book.note("reloading", name, why, version=version)
            if "restart" in (cls.reload_strategy, type(current[name].plugin).reload_strategy):
                report.strategy[name] = "restart"
        for name in plan.load:
            report.versions[name] = ("-", str(registry[name].cls.version))

        def interrupted(label: Any) -> PluginError:  # the start aside in flight is abandoned
            return op.error(label[0].name if label else next(n for n in order if n not in new))

        interrupt = (op.hurry, interrupted)
        try:
            for restart, group in itertools.groupby(order, key=report.strategy.__contains__):
                run = list(group)
                if restart:
                    for name in run:
                        await self._restart(op, name)
                    continue
                op.check(run[0])
                try:  # a run of hot plugins: started aside, each as its old one exports
                    entries = [registry[n] for n in run]
                    await self.runner.start(entries, current, new, interrupt=interrupt)
                finally:
                    report.started.extend(n for n in run if n in new)
            op.check(order[-1] if order else "kernel")
            self._lap("start")
            self._generation = self.pool.build({**current, **new}, registry.graph())
            # a canary (the gateway's verify) may refuse the new set before any swap
            await self.pool.verify(self._generation, {n: registry[n] for n in order})
        except Exception as exc:
            error = (
                exc if isinstance(exc, PluginError) else PluginError("gateway", "swap", cause=exc)
            )
            await self._rollback(error)
            message = (
                f"Reload of {', '.join(report.targets)} rolled back: plugin {error.plugin!r} "
                f"failed in {error.phase}: {str(report.error).rstrip('.')}. The old versions "
                f"keep serving."
            )
            raise self._error(error, message) from error.cause
        self.state = "prepared"

    async def _restart(self, op: Operation, name: str) -> None:
        """A ``restart`` plugin: export its state, stop the old instance, start the new one."""
        op.check(name)
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

    async def _rollback(self, error: PluginError) -> None:
        """Stop the new instances (dependents first), restart what ``restart`` plugins stopped."""
        book, runner, report, current = self.book, self.runner, self.report, self._old_gen.live
        self.state = "aborted"  # from its start: a commit meanwhile is refused
        await runner.stop([self._new[n] for n in reversed(list(self._new))], book.stop_failed)
        stop_hung = error.phase == "stop" and isinstance(error, PluginTimeoutError)
        for name in reversed(self._stopped_first):
            old = current[name]
            try:
                if name == error.plugin and stop_hung:
                    raise error  # its stop may still run: not started again, out of service
                await runner.call(old, "start", old.ctx, timeout=runner.timeouts.start)
                old.stopping = False  # started again: it serves as before
            except PluginError as exc:  # neither version runs: out of service, with its users
                book.failed(name, exc)
                await _loader.unload(book, self.pool, runner, name, dead=True)
        self._new.clear()
        report.rolled_back = True
        self._failed(error)
        report.timings["total"] = time.perf_counter() - self._t0
        version = error.version or ""
        book.note("reload_failed", error.plugin, f"in {error.phase}", report.error, version)
        for name in self.plan.order if self.plan else ():
            if name in self.pool.current.live:
                book.note("rolled_back", name, version=current[name].version)

    async def abort(self, op: Operation, reason: str) -> ReloadReport:
        """Roll back a prepared transaction; the old set keeps serving, as after a failure."""
        if self.plan is None:
            self.state = "aborted"
            self.report.rolled_back = True
            self.report.error = reason
        else:
            target = self.plan.targets[0]  # a plan has at least one
            await self._rollback(PluginError(target, "abort", cause=RuntimeError(reason)))
        return self.report

    async def commit(self, op: Operation) -> ReloadReport:
        """Swap, drain the old generation, stop the old instances; then record and load what
        the change registers (PreparedReload and Kernel.apply call it prepared only)."""
        book, plan, report, drain = self.book, self.plan, self.report, self.runner.timeouts.drain
        self.state = "committed"
        book.registry = self.registry
        if plan is not None and self._generation is not None:
            self.pool.swap(self._generation)  # -- the swap: one reference --
            for name, live in self._generation.live.items():  # outside the cascade (a reload
                if name not in self._new:  # without it): ctx.get answers the new instances
                    for dep in live.ctx._deps.keys() & self._new.keys():
                        live.ctx._deps[dep] = self._new[dep].plugin
            book.last_cascade = tuple(plan.order)  # before the events: views redraw on them
            self._lap("swap")
            for name in plan.order:
                book.reloaded(name, *report.versions[name])
            if not await self.pool.drain(self._old_gen, drain, hurry=op):
                cut = (
                    "cut short by an interrupt" if op.interrupted else f"timed out after {drain:g}s"
                )
                why = f"drain {cut}; stopping old instances"
                book.note("stopping", ", ".join(plan.targets), why)
            self._lap("drain")
            stopping = [n for n in reversed(plan.order) if n not in self._stopped_first]
            await self.runner.stop([self._old_gen.live[n] for n in stopping], book.stop_failed)
            report.stopped.extend(reversed(plan.order))
            self._lap("stop")
            if plan.load:
                await self._load(op, plan.load, plan.targets)
        if self.new and plan is None:  # nothing reloaded: the cascade is what this loads
            book.last_cascade = ()
        book.pending.update(self.pending)
        for name, detail in self.registered.items():
            book.registered(name, detail)
        for name, detail in self.configured.items():
            book.emit("configured", name, detail=detail)
        if self.new:
            for name in self.new:
                report.versions.setdefault(name, ("-", str(self.registry[name].cls.version)))
            await self._load(op, self.new, self.new)
        report.timings["total"] = time.perf_counter() - self._t0
        return report

    async def _load(self, op: Operation, names: list[str], targets: list[str]) -> None:
        """Load plugins that were not running; raise ReloadError if one of ``targets`` failed.
        They join ``book.last_cascade`` before their first event (views redraw on events)."""
        book, report = self.book, self.report
        todo = _loader.to_load(book, self.pool, names)
        book.last_cascade += tuple(n for n in todo if n not in book.last_cascade)
        loaded = await _loader.load(book, self.pool, self.runner, todo, op)
        report.loaded.extend(n for n in loaded.order if n not in report.loaded)
        if failed := [n for n in targets if n in loaded.failed]:
            error = loaded.failed[failed[0]]
            self._failed(error)
            message = (
                f"Plugin {error.plugin!r} {error.version} was registered but failed in "
                f"{error.phase}: {report.error}"
            )
            raise self._error(error, message) from error.cause

    def _error(self, error: PluginError, message: str) -> ReloadError:
        cause, version = error.cause, error.version
        return ReloadError(
            error.plugin, error.phase, message, cause=cause, version=version, report=self.report
        )

    def _failed(self, error: PluginError) -> None:
        """Put what failed, where, and why (secrets masked) into the report."""
        cause = describe(error.cause) if error.cause is not None else str(error)
        self.report.error = self.book.mask(cause)
        self.report.phase, self.report.plugin = error.phase, error.plugin
