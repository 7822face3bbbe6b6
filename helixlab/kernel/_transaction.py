"""A reload as a transaction split at its swap: prepare, then commit or abort.

:class:`Transaction` is the one code path of every change that restarts plugins
(``reload``, ``configure``, ``apply_config``, ``define``):

- :meth:`Transaction.prepare` starts the new instances aside, in dependency order, each
  bound to the new instances of its dependencies, with the old one's exported state, and
  builds the next generation (the gateway's chain). ``restart`` plugins stop their old
  instance first. A failure, or an interrupt, rolls back and raises ``ReloadError``.
- :meth:`Transaction.commit` swaps the generation (one reference), drains the old one
  (bounded by ``Timeouts.drain``) and stops the old instances, dependents first.
- :meth:`Transaction.abort` rolls back exactly as a failed prepare does.

:class:`PreparedReload` is the public handle on a prepared transaction (what a fleet
worker holds while the other workers prepare): it keeps the kernel's operation lock until
``commit()`` or ``abort()``, and aborts by itself when its ``timeout`` expires, so an
abandoned prepare cannot hold the kernel for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..errors import KernelClosedError, PluginError, PluginTimeoutError, ReloadError, describe
from . import _loader
from ._lifecycle import Job, Live, call_phase, home, widest
from ._plugin import PluginState
from ._registry import Entry, Registry
from ._reports import ReloadReport
from ._workers import Interrupt

__all__ = ["PreparedReload", "Transaction"]

#: ``finish(report)``: what a change does after its swap (events, loading new plugins)
Finish = Callable[[ReloadReport], Awaitable[None]]


#: the phases a new instance goes through in a hot reload
_START = ("init", "import_state", "start")


class Interrupted(PluginError):
    """The caller interrupted the operation before its swap (KeyboardInterrupt, cancel)."""


class Transaction:
    """One change of the live set, prepared aside, then committed or aborted."""

    def __init__(self, kernel: Any, plan: Any, registry: Registry, finish: Finish | None = None):
        self.kernel = kernel
        self.plan = plan  # None: nothing running is restarted (only the registry changes)
        self.registry = registry
        self.finish = finish
        targets = list(plan.targets) if plan is not None else []
        self.report = ReloadReport(targets=targets, order=list(plan.order) if plan else [])
        self.state = "new"  # -> prepared -> committed | aborted
        self._new: dict[str, Live] = {}
        self._stopped_first: list[str] = []
        self._generation: Any = None
        self._old_gen = kernel._pool.current
        self._t0 = time.perf_counter()

    @property
    def current(self) -> Mapping[str, Live]:
        return self._old_gen.live

    # -- prepare ----------------------------------------------------------------------

    async def prepare(self) -> None:
        """Start the new set aside and build its generation; on failure roll back and raise."""
        kernel, plan = self.kernel, self.plan
        if plan is None:
            self.state = "prepared"
            return
        current, report = self.current, self.report
        order, registry = plan.order, plan.registry
        entries = [registry[name] for name in order]  # looked up once: n can be thousands
        versions = report.versions
        for name, entry in zip(order, entries):
            versions[name] = (current[name].version, str(entry.cls.version))
        for name in plan.load:
            versions[name] = ("-", str(registry[name].cls.version))
        cascade = f"cascade from {', '.join(plan.targets)}"
        targets = set(plan.targets)
        kernel._emit_many(
            "reloading",
            [(n, current[n].version, "target" if n in targets else cascade) for n in order],
        )
        try:
            i = 0
            homes = [self._home(name, entry) for name, entry in zip(order, entries)]
            while i < len(order):
                if homes[i] is None:  # the restart strategy
                    await self._restart(order[i])
                    i += 1
                    continue
                j, where = i, "none"  # a run of hot plugins: one job, where it costs least
                while j < len(order) and homes[j] is not None:
                    here = homes[j]
                    if "none" not in (where, here) and here != where:
                        break
                    where = widest(where, here)
                    j += 1
                made: dict[str, Live] = {}
                try:
                    job = self._start_job(order[i:j], entries[i:j], made)
                    await kernel._runner.run(job, where, interrupt=self._interrupt(order[i]))
                finally:
                    for name, live in made.items():
                        if name not in self._new:  # it failed: it must not keep its deps alive
                            live.ctx._deps.clear()
                i = j
            self._check_interrupt(plan.order[-1] if plan.order else "kernel")
            self._t_started = time.perf_counter()
            self._generation = kernel._pool.build({**current, **self._new}, plan.graph)
            # a canary (the gateway's verify) may refuse the new set before any swap
            await kernel._pool.verify(self._generation, dict(zip(order, entries)))
        except Exception as exc:
            if isinstance(exc, PluginError):
                error = exc
            else:
                error = PluginError("gateway", "swap", cause=exc)
            await self._rollback(error)
            raise self._rolled_back_error(error) from error.cause
        self.state = "prepared"

    def _home(self, name: str, entry: Entry) -> str | None:
        """Where the job starting ``name``'s new instance runs; None: the restart strategy."""
        old_class = type(self.current[name].plugin)
        if "restart" in (entry.cls.reload_strategy, old_class.reload_strategy):
            self.report.strategy[name] = "restart"
            return None
        return widest(home(old_class, ("export_state",)), home(entry.cls, _START))

    def _start_job(self, names: list[str], entries: list[Entry], made: dict[str, Live]) -> Job:
        """Start the new instances of ``names`` in turn (one job: see ``_lifecycle``)."""
        kernel, current, new, started = self.kernel, self.current, self._new, self.report.started
        for name, entry in zip(names, entries):
            self._check_interrupt(name)
            live = yield from _loader.start_steps(kernel, entry, current, new, made, current[name])
            new[name] = live
            started.append(name)

    async def _restart(self, name: str) -> None:
        """A ``restart`` plugin: export its state, stop the old instance, start the new one."""
        kernel, old = self.kernel, self.current[name]
        self._check_interrupt(name)
        state = await call_phase(old, "export_state", timeout=kernel.timeouts.export_state)
        self._check_interrupt(name)
        error = await _loader.stop_instance(kernel, old, set_state=False)
        if error is None or isinstance(error, PluginTimeoutError):
            # a stop that raised left the instance serving; one that hung may still be
            # stopping it: the rollback takes that one out of service
            self._stopped_first.append(name)
        else:
            old.stopping = False  # a stop that raised left the instance serving
        if error is not None:
            raise error
        self._check_interrupt(name)
        self._new[name] = await _loader.start_instance(
            kernel,
            self.plan.registry[name],
            self.current,
            bound=self._new,
            state=state,
            handover=True,
        )
        self.report.started.append(name)

    def _interrupt(self, first: str) -> Interrupt | None:
        """An interrupt abandons the start-aside in flight at once, as its timeout would: a
        slow ``start`` is stopped when it returns (``Kernel._started_late``)."""
        op = self.kernel._op
        if op is None:
            return None

        def error(label: Any) -> Interrupted:
            name = label[0].name if label else first
            return Interrupted(
                name,
                "interrupt",
                cause=KeyboardInterrupt("interrupted by the caller before the swap"),
            )

        return op.hurry, error

    def _check_interrupt(self, name: str) -> None:
        op = self.kernel._op
        if op is not None and op.interrupted:
            raise Interrupted(
                name,
                "interrupt",
                cause=KeyboardInterrupt("interrupted by the caller before the swap"),
            )

    def _rolled_back_error(self, error: PluginError) -> ReloadError:
        report = self.report
        why = str(report.error).rstrip(".")
        return ReloadError(
            error.plugin,
            error.phase,
            f"Reload of {', '.join(self.plan.targets)} rolled back: plugin {error.plugin!r} "
            f"failed in {error.phase}: {why}. The old versions keep serving.",
            cause=error.cause,
            version=error.version,
            report=report,
        )

    async def _rollback(self, error: PluginError) -> None:
        """Stop the new instances (dependents first), restart what ``restart`` plugins stopped."""
        kernel, report, current = self.kernel, self.report, self.current
        await _loader.stop_many(kernel, [self._new[name] for name in reversed(list(self._new))])
        for name in reversed(self._stopped_first):
            old = current[name]
            stop_hung = error.phase == "stop" and isinstance(error, PluginTimeoutError)
            if name == error.plugin and stop_hung:
                # its stop failed or timed out (and may still be running): it cannot be
                # started again safely, so it goes out of service with what needs it
                _loader.fail(kernel, name, error)
                await _loader.unload(kernel, name, dead=True)
                continue
            try:
                await call_phase(old, "start", old.ctx, timeout=kernel.timeouts.start)
                old.stopping = False  # started again: it serves as before
            except PluginError as exc:
                # neither version runs: out of service, with everything that needs it
                _loader.fail(kernel, name, exc)
                await _loader.unload(kernel, name, dead=True)
        self._new.clear()
        self.state = "aborted"
        report.rolled_back = True
        _record_failure(kernel, report, error)
        report.timings["total"] = time.perf_counter() - self._t0
        kernel._emit(
            "reload_failed",
            error.plugin,
            detail=f"in {error.phase}",
            error=report.error,
            version=error.version or "",
        )
        for name in self.plan.order:
            if name in kernel._pool.current.live:
                kernel._emit("rolled_back", name, version=current[name].version)

    # -- commit / abort -------------------------------------------------------------------

    async def abort(self, reason: str) -> ReloadReport:
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

    async def commit(self) -> ReloadReport:
        """Swap, drain the old generation, stop the old instances; then ``finish``."""
        if self.state != "prepared":
            raise ReloadError("kernel", "commit", f"Cannot commit a reload that is {self.state}.")
        kernel, plan, report = self.kernel, self.plan, self.report
        self.state = "committed"
        if plan is None:
            kernel._registry = self.registry
            if self.finish is not None:
                await self.finish(report)
            report.timings["total"] = time.perf_counter() - self._t0
            return report
        pool, current = kernel._pool, self.current
        # -- the swap: one reference --------------------------------------------------
        kernel._registry = self.registry
        pool.swap(self._generation)
        _rebind(self._generation.live, self._new)
        kernel.last_cascade = tuple(plan.order)  # before the events: views redraw on them
        t_swapped = time.perf_counter()
        reloads, errors, states = kernel._reloads, kernel._errors, kernel._states
        health = kernel._health
        rows = []
        for name in plan.order:
            reloads[name] = reloads.get(name, 0) + 1
            errors.pop(name, None)
            health.pop(name, None)  # a new instance: not checked yet
            states[name] = PluginState.ACTIVE
            old, new_version = report.versions[name]
            detail = f"{old} -> {new_version}" if old != new_version else f"{old} (new instance)"
            rows.append((name, new_version, detail))
        kernel._emit_many("reloaded", rows)

        # -- drain, then stop the old instances, dependents first -------------------------
        drained = await pool.drain(self._old_gen, kernel.timeouts.drain, hurry=kernel._op)
        if not drained:
            op = kernel._op
            why = (
                "drain cut short by an interrupt"
                if op is not None and op.interrupted
                else f"drain timed out after {kernel.timeouts.drain:g}s"
            )
            kernel._emit(
                "stopping", ", ".join(plan.targets), detail=f"{why}; stopping old instances"
            )
        t_drained = time.perf_counter()
        stopping = [n for n in reversed(plan.order) if n not in self._stopped_first]
        await _loader.stop_many(kernel, [current[name] for name in stopping])
        report.stopped.extend(reversed(plan.order))
        t_stopped = time.perf_counter()
        if plan.load:
            await load_new(kernel, plan.load, plan.targets, report)
        if self.finish is not None:
            await self.finish(report)
        report.timings.update(
            start=self._t_started - self._t0,
            swap=t_swapped - self._t_started,
            drain=t_drained - t_swapped,
            stop=t_stopped - t_drained,
            total=time.perf_counter() - self._t0,
        )
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


async def load_new(kernel: Any, names: list[str], targets: list[str], report: ReloadReport) -> None:
    """Load plugins that were not running; raise ReloadError if one of ``targets`` failed.

    They join ``kernel.last_cascade`` before their first event (a view redrawn on events
    reads it)."""
    todo = _loader.to_load(kernel, names)
    kernel.last_cascade += tuple(n for n in todo if n not in kernel.last_cascade)
    loaded = await _loader.load_these(kernel, todo)
    report.loaded.extend(n for n in loaded.order if n not in report.loaded)
    failed = [n for n in targets if n in loaded.failed]
    if failed:
        error = loaded.failed[failed[0]]
        _record_failure(kernel, report, error)
        raise ReloadError(
            error.plugin,
            error.phase,
            f"Plugin {error.plugin!r} {error.version} was registered but failed in "
            f"{error.phase}: {report.error}",
            cause=error.cause,
            version=error.version,
            report=report,
        ) from error.cause


def _record_failure(kernel: Any, report: ReloadReport, error: PluginError) -> None:
    """Put what failed, where, and why (secrets masked) into the report."""
    cause = describe(error.cause) if error.cause is not None else str(error)
    report.error = kernel._redact(cause)
    report.phase, report.plugin = error.phase, error.plugin


class PreparedReload:
    """A reload prepared up to its swap: the new instances run aside, nothing swapped yet.

    Made by :meth:`Kernel.prepare_reload` (and ``prepare_configure``,
    ``prepare_apply_config``, ``prepare_define``). It holds the kernel's operation lock:
    no other lifecycle operation runs until :meth:`commit` (swap, drain, stop the old;
    returns the ReloadReport) or :meth:`abort` (roll back as a failed reload does). If
    neither comes within ``timeout`` seconds it aborts by itself. As a context manager
    (``with kernel.prepare_reload("a") as prepared: ... prepared.commit()``) leaving the
    block without a commit aborts.
    """

    def __init__(self, kernel: Any, transaction: Transaction, timeout: float):
        self._kernel = kernel
        self._txn = transaction
        self.timeout = timeout
        self.expired = False
        loop = kernel._thread.loop
        self._timer = loop.call_later(timeout, self._expire) if timeout is not None else None

    @property
    def order(self) -> list[str]:
        """The running plugins it restarts, dependencies first."""
        return list(self._txn.report.order)

    @property
    def report(self) -> ReloadReport:
        """The report so far (complete once committed or aborted)."""
        return self._txn.report

    @property
    def state(self) -> str:
        """``prepared``, ``committed`` or ``aborted``."""
        return self._txn.state

    def _expire(self) -> None:
        if self._txn.state == "prepared":
            self.expired = True
            task = asyncio.ensure_future(self._finish("abort", expired=True))
            self._kernel._keep(task)

    async def _finish(self, how: str, *, expired: bool = False) -> ReloadReport:
        """Commit or abort on the kernel's loop, then release the operation lock."""
        kernel, txn = self._kernel, self._txn
        if txn.state != "prepared":
            why = " (its timeout expired)" if self.expired else ""
            raise ReloadError(
                (txn.report.targets or ["kernel"])[0],
                how,
                f"Cannot {how} this prepared reload: it is already {txn.state}{why}.",
                report=txn.report,
            )
        if self._timer is not None:
            self._timer.cancel()
        op = kernel._begin_op()
        try:
            if how == "commit":
                return await txn.commit()
            reason = (
                f"not committed within {self.timeout:g}s" if expired else "aborted by the caller"
            )
            report = await txn.abort(reason)
            if expired:
                kernel._emit("rolled_back", "kernel", detail=f"prepared reload {reason}")
            return report
        finally:
            kernel._end_op(op)
            kernel._prepared = None
            kernel._op_lock.release()

    async def acommit(self) -> ReloadReport:
        """Async twin of :meth:`commit`."""
        return await self._kernel._arun(self._finish("commit"))

    async def aabort(self) -> ReloadReport:
        """Async twin of :meth:`abort`."""
        return await self._kernel._arun(self._finish("abort"))

    def commit(self) -> ReloadReport:
        """Swap the prepared generation in, drain and stop the old one; the ReloadReport."""
        return self._kernel._run(self._finish("commit"))

    def abort(self) -> ReloadReport:
        """Stop the new instances; the old set keeps serving. The (rolled back) ReloadReport."""
        return self._kernel._run(self._finish("abort"))

    def __enter__(self) -> PreparedReload:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._txn.state == "prepared":
            with contextlib.suppress(KernelClosedError):
                self.abort()

    async def __aenter__(self) -> PreparedReload:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._txn.state == "prepared":
            await self.aabort()

    def __repr__(self) -> str:
        return f"<PreparedReload {self.state}: {', '.join(self.order) or 'nothing to restart'}>"
