"""The fault matrix: every lifecycle phase × (raises, hangs, returns garbage, exits with a
BaseException, the caller interrupted) × (first load, reload, cascade reload, unload, close).

``exits``: an async method raises SystemExit; ``keyboard``: a plain one raises
KeyboardInterrupt (both are that plugin's failure, like any exception). ``interrupted``:
while the plugin is in that phase, the *caller* gets a real SIGINT (Jupyter's interrupt
button); the operation then rolls back (before the swap) or finishes (after it), and the
caller gets the KeyboardInterrupt.

The plugins are ``a <- b <- c`` and an unrelated ``d``. One of them misbehaves in one phase
once armed. After each fault: the error (or event) names the plugin and the phase; states,
``info()``, events and live instances agree; whatever served before still serves (or the
new versions, when the fault came after the swap); every live instance's context points
at the live instances of its dependencies; and no task or thread outlives the fault (an
async hang is cancelled by its timeout; a plain method that blocks keeps its worker thread,
because Python cannot kill a thread, until the test releases it).

A phase that a scenario never calls is not in its row: reload does not run health checks,
a first load does not export state. ``test_faults.py`` holds the detailed single-fault
tests; this file is the grid, with leak counting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import helixlab as hx
from helixlab.errors import PluginError, PluginNotFoundError, ReloadError

from _waiting import wait_until

#: Short enough that the hung phases of ~300 cases end quickly, long enough that a healthy
#: phase is never timed out on a loaded 2-core machine (0.2 s was, once, under load 12).
SHORT = hx.Timeouts(
    init=0.5, start=0.5, stop=0.5, health=0.5, export_state=0.5, import_state=0.5, drain=1.0
)
NAMES = ("a", "b", "c", "d")
ACTIVE = hx.PluginState.ACTIVE

#: The phases each scenario calls on the faulty plugin.
SCENARIOS = {
    "load": ("init", "start", "health"),
    "reload": ("export_state", "init", "import_state", "start", "stop"),
    "cascade": ("export_state", "init", "import_state", "start", "stop"),
    "unload": ("stop",),
    "close": ("stop",),
}
MODES = ("raises", "hangs", "garbage", "exits", "keyboard", "interrupted")


class BadAwaitable:
    """Looks awaitable, but yields something that is not a future."""

    def __await__(self) -> Iterator[Any]:
        yield "garbage"


class Odd:
    """A value nobody can compare, print or test for truth."""

    def __bool__(self) -> bool:
        raise RuntimeError("bool of Odd")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq of Odd")

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        raise RuntimeError("repr of Odd")


#: What each phase returns in ``garbage`` mode, and whether that is an error.
GARBAGE: dict[str, tuple[Callable[[], Any], bool]] = {
    "init": (BadAwaitable, True),  # a plain method returning a broken awaitable
    "start": (lambda: list(range(200_000)), False),  # a huge return value: ignored
    "stop": (BadAwaitable, True),
    "health": (Odd, False),  # neither False nor a message: healthy
    "export_state": (object, True),  # the next instance's import_state chokes on it
    "import_state": (BadAwaitable, True),
}


def export_state(self) -> dict:
    return {"hits": getattr(self, "hits", 0) + 1}


def import_state(self, state) -> None:
    self.hits = state["hits"]  # TypeError for garbage state


NORMAL = {"export_state": export_state, "import_state": import_state}


class Fault:
    """One phase of one plugin misbehaving in one mode, once ``armed``."""

    def __init__(self, plugin: str, phase: str, mode: str):
        self.plugin, self.phase, self.mode = plugin, phase, mode
        self.armed = False
        self.calls = 0
        self.cancelled = 0
        self.release = threading.Event()  # ends a plain-thread hang
        self.taken = threading.Event()  # the kernel emitted "interrupted"
        self.interrupted = False

    @property
    def fails(self) -> bool:
        return self.mode != "garbage" or GARBAGE[self.phase][1]

    def interrupt_caller(self) -> None:
        """Press the interrupt button; go on once the kernel has taken the interrupt."""
        self.interrupted = True
        os.kill(os.getpid(), signal.SIGINT)
        assert self.taken.wait(10)

    @property
    def reason(self) -> str:
        """What reports and events say went wrong (the error's cause)."""
        if self.mode in ("hangs", "thread"):
            return f"within {SHORT.init:g}s"
        if self.mode == "raises":
            return f"RuntimeError: {self.phase} exploded"
        if self.mode == "exits":
            return f"SystemExit: {self.phase} exited"
        if self.mode == "keyboard":
            return "KeyboardInterrupt"
        if self.phase == "export_state":
            return "TypeError"
        return "Task got bad yield"

    @property
    def failing_phase(self) -> str:
        """The phase the error names: garbage state is refused by the next import_state."""
        if self.mode == "garbage" and self.phase == "export_state":
            return "import_state"
        return self.phase

    def method(self) -> Callable[..., Any]:
        fault, normal = self, NORMAL.get(self.phase)

        if self.mode in ("garbage", "thread", "keyboard", "interrupted"):

            def plain(plugin, *args):
                if fault.armed:
                    fault.calls += 1
                    if fault.mode == "thread":
                        fault.release.wait()
                    elif fault.mode == "keyboard":
                        raise KeyboardInterrupt
                    elif fault.mode == "interrupted":
                        fault.armed = False  # once
                        fault.interrupt_caller()
                    else:
                        return GARBAGE[fault.phase][0]()
                return normal(plugin, *args) if normal else None

            return plain

        async def method(plugin, *args):
            if fault.armed:
                fault.calls += 1
                if fault.mode == "raises":
                    raise RuntimeError(f"{fault.phase} exploded")
                if fault.mode == "exits":
                    raise SystemExit(f"{fault.phase} exited")
                try:
                    await asyncio.Event().wait()  # never set: only the timeout ends it
                except asyncio.CancelledError:
                    fault.cancelled += 1
                    raise
            return normal(plugin, *args) if normal else None

        return method


# -- the harness -----------------------------------------------------------------------------


def kernel_tasks(kernel: hx.Kernel) -> list[asyncio.Task]:
    """The tasks on the kernel's loop, besides the one asking."""

    async def others() -> list[asyncio.Task]:
        me = asyncio.current_task()
        return [t for t in asyncio.all_tasks() if t is not me and not t.done()]

    return kernel._thread.run(others())


@pytest.fixture
def threads_before() -> set[threading.Thread]:
    return set(threading.enumerate())


@pytest.fixture(params=["asyncio", "uvloop"])
def kernel(threads_before, make_kernel, request) -> hx.Kernel:
    k = make_kernel(timeouts=SHORT, loop=request.param)  # every guarantee on both loops
    assert k.loop_kind == request.param
    return k


def build(kernel: hx.Kernel, make_plugin, fault: Fault) -> None:
    """``a <- b <- c`` and ``d``; ``fault.plugin`` carries the faulty method."""
    for name, deps in (("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ())):
        methods: dict[str, Any] = dict(NORMAL)
        if name == fault.plugin:
            attr = "health_check" if fault.phase == "health" else fault.phase
            methods[attr] = fault.method()
        kernel.register(make_plugin(name, deps=deps, **methods))


def live(kernel: hx.Kernel) -> dict[str, hx.Plugin]:
    found = {}
    for name in kernel.names:
        with contextlib.suppress(PluginNotFoundError):
            found[name] = kernel.get(name)
    return found


def assert_consistent(kernel: hx.Kernel) -> None:
    """States, info rows, live instances and dependency bindings tell one story."""
    running = live(kernel)
    rows = {row.name: row for row in kernel.info()}
    assert set(rows) == set(kernel.names)
    for name in kernel.names:
        state = kernel.state(name)
        assert rows[name].state == state.value
        assert (state == ACTIVE) == (name in running), (name, state)
        if state == hx.PluginState.FAILED:
            assert rows[name].error, name
            assert kernel.events(name)[-1].kind in ("failed", "skipped", "rolled_back")
    for name, instance in running.items():
        assert instance.version == rows[name].version  # the registered class is the one serving
        entry = kernel._pool.current.live[name]
        for dep in rows[name].dependencies:
            assert dep in running, f"{name} serves without its dependency {dep}"
            assert entry.ctx.get(dep) is running[dep], f"{name} is bound to a stale {dep}"
    with kernel.lease() as lease:
        assert dict(lease.instances) == running


def assert_names(error: PluginError, fault: Fault) -> None:
    assert (error.plugin, error.phase) == (fault.plugin, fault.failing_phase)
    text = str(error)
    assert repr(fault.plugin) in text and fault.failing_phase in text
    assert fault.reason in text or fault.reason in str(error.cause), text


def assert_no_leaks(kernel: hx.Kernel, fault: Fault, threads_before: set) -> None:
    """After the fault (released) and close: no task, no thread, no loop left behind."""
    if not kernel._ops.closed:  # an interrupted health check runs out its own timeout
        wait_until(
            lambda: kernel_tasks(kernel),
            SHORT.health + 5,
            "no task of the kernel's left running",
            holds=lambda tasks: tasks == [],
        )
    if fault.mode == "hangs":
        assert fault.cancelled == fault.calls  # every hung coroutine was cancelled
    fault.release.set()
    kernel.close()
    assert not kernel._thread.running and kernel._thread.loop.is_closed()
    left = [t for t in threading.enumerate() if t not in threads_before]
    for t in left:
        t.join(5)  # threads already told to end; a join is not a sleep
    assert [t.name for t in threading.enumerate() if t not in threads_before] == []


def failed_events(kernel: hx.Kernel, since: int, fault: Fault) -> list[hx.PluginEvent]:
    return [
        e
        for e in kernel.events()[since:]
        if e.kind in ("failed", "reload_failed") and e.plugin == fault.plugin
    ]


# -- the matrix ------------------------------------------------------------------------------


def matrix() -> list:
    cases = [
        pytest.param(scenario, phase, mode, id=f"{scenario}-{phase}-{mode}")
        for scenario, phases in SCENARIOS.items()
        for phase in phases
        for mode in MODES
    ]
    # a few plain methods that block their worker thread (released by the test)
    cases += [
        pytest.param("reload", "start", "thread", id="reload-start-thread"),
        pytest.param("load", "health", "thread", id="load-health-thread"),
        pytest.param("close", "stop", "thread", id="close-stop-thread"),
    ]
    return cases


@pytest.mark.parametrize(("scenario", "phase", "mode"), matrix())
def test_fault_matrix(kernel, make_plugin, threads_before, scenario, phase, mode):
    faulty = "c" if scenario == "cascade" else "b"
    fault = Fault(faulty, phase, mode)
    if scenario == "load":
        fault.armed = True
    build(kernel, make_plugin, fault)
    if mode == "interrupted":
        kernel.subscribe(lambda e: fault.taken.set() if e.kind == "interrupted" else None)
    late_stop = threading.Event()  # a hung start that returns once released is stopped then
    kernel.subscribe(lambda e: late_stop.set() if "abandoned instance" in e.detail else None)
    try:
        (run_interrupted if mode == "interrupted" else RUN[scenario])(kernel, fault, scenario)
    finally:
        fault.release.set()
    if mode == "thread" and phase == "start" and fault.calls:
        assert late_stop.wait(10)
    if scenario != "close":
        assert_consistent(kernel)
    assert_no_leaks(kernel, fault, threads_before)


def run_load(kernel: hx.Kernel, fault: Fault, scenario: str = "") -> None:
    report = kernel.load_all()
    if fault.phase == "health":
        assert report.ok
        health = kernel.health()
        assert kernel.state("b") == ACTIVE  # an unhealthy plugin keeps serving
        if fault.fails:
            assert not health["b"].healthy and fault.reason in health["b"].detail
            assert (kernel.events("b")[-1].kind, kernel.events("b")[-1].detail) == (
                "health_changed",
                "unhealthy",
            )
        else:
            assert health["b"].healthy and str(health["b"]) == "b: healthy"
        assert all(health[n].healthy for n in ("a", "c", "d"))
        return
    if not fault.fails:
        assert report.ok and set(live(kernel)) == set(NAMES)
        return
    assert report.order == ["a", "d"]
    assert_names(report.failed["b"], fault)
    assert report.skipped == {"c": "needs 'b', which failed"}
    assert kernel.state("b") == hx.PluginState.FAILED
    assert kernel.state("c") == hx.PluginState.REGISTERED
    last = kernel.events("b")[-1]
    assert (last.kind, last.detail) == ("failed", f"in {fault.phase}")
    assert {r.name: r.error for r in kernel.info()}["b"].startswith(f"{fault.phase}: ")
    # the fault mended, the same plugin loads with its dependent
    fault.armed = False
    assert kernel.load("c").order == ["b", "c"]


def run_reload(kernel: hx.Kernel, fault: Fault, scenario: str = "") -> None:
    """Reload ``b`` (scenario reload, fault in b) or ``a`` (cascade, fault in c)."""
    assert kernel.load_all().ok
    before = live(kernel)
    target = "a" if fault.plugin == "c" else "b"
    cascade = ["a", "b", "c"] if target == "a" else ["b", "c"]
    count = len(kernel.events())
    fault.armed = True

    if fault.phase == "stop":  # after the swap: the reload stands, the failure is reported
        report = kernel.reload(target)
        assert report.ok and report.order == cascade and report.stopped == cascade[::-1]
        now = live(kernel)
        assert all(now[n] is not before[n] for n in cascade) and now["d"] is before["d"]
        (failed,) = failed_events(kernel, count, fault)
        assert failed.detail == "in stop" and repr(fault.plugin) in failed.error
        assert fault.reason in failed.error
        assert kernel.state(fault.plugin) == ACTIVE
        assert [kernel.reload_count(n) for n in cascade] == [1] * len(cascade)
        fault.armed = False  # so that close stops the new instance cleanly
        return

    if not fault.fails:  # garbage that is harmless: the reload goes through
        assert kernel.reload(target).order == cascade and fault.calls == 1
        assert all(live(kernel)[n] is not before[n] for n in cascade)
        return

    with pytest.raises(ReloadError) as info:
        kernel.reload(target)
    error = info.value
    assert_names(error, fault)
    assert "rolled back" in str(error) and "old versions keep serving" in str(error)
    report = error.report
    assert report.rolled_back and (report.plugin, report.phase) == (
        fault.plugin,
        fault.failing_phase,
    )
    assert live(kernel) == before  # the very same instances serve
    assert {kernel.state(n) for n in NAMES} == {ACTIVE}
    assert all(kernel.reload_count(n) == 0 for n in NAMES)
    kinds = [(e.kind, e.plugin) for e in kernel.events()[count:]]
    assert ("reloaded", target) not in kinds
    assert kinds[-len(cascade) - 1 :] == [
        ("reload_failed", fault.plugin),
        *(("rolled_back", n) for n in cascade),
    ]
    failed = [e for e in kernel.events()[count:] if e.kind == "reload_failed"]
    assert failed[0].detail == f"in {fault.failing_phase}"
    # mended, the same reload goes through
    fault.armed = False
    assert kernel.reload(target).order == cascade
    assert all(live(kernel)[n] is not before[n] for n in cascade)


def run_unload(kernel: hx.Kernel, fault: Fault, scenario: str = "") -> None:
    assert kernel.load_all().ok
    count = len(kernel.events())
    fault.armed = True
    assert kernel.unload("a") == ["c", "b", "a"]
    assert set(live(kernel)) == {"d"}
    assert [kernel.state(n) for n in "abc"] == [hx.PluginState.STOPPED] * 3
    (failed,) = failed_events(kernel, count, fault)
    assert failed.detail == "in stop" and fault.reason in failed.error
    assert kernel.events("b")[-1].kind == "unloaded"
    fault.armed = False
    assert kernel.load("c").order == ["a", "b", "c"]  # loads again from scratch


def run_close(kernel: hx.Kernel, fault: Fault, scenario: str = "") -> None:
    assert kernel.load_all().ok
    count = len(kernel.events())
    fault.armed = True
    if fault.mode == "thread":
        # the stop hangs in its worker thread: release it once the timeout was reported
        kernel.subscribe(
            lambda e: fault.release.set() if (e.kind, e.plugin) == ("failed", "b") else None
        )
    leftover: list = []

    def at_last_stop(event: hx.PluginEvent) -> None:  # on the kernel's loop, inside close()
        if (event.kind, event.plugin) == ("stopped", "a"):
            loop = kernel._thread.loop
            me = asyncio.current_task(loop)
            leftover.extend(t for t in asyncio.all_tasks(loop) if t is not me and not t.done())

    kernel.subscribe(at_last_stop)
    kernel.close()
    assert leftover == []  # the hung stop was cancelled before close went on
    (failed,) = failed_events(kernel, count, fault)
    assert failed.detail == "in stop" and fault.reason in failed.error
    assert {kernel.state(n) for n in NAMES} == {hx.PluginState.STOPPED}
    stopped = [e.plugin for e in kernel.events()[count:] if e.kind == "stopped"]
    assert sorted(stopped) == sorted(NAMES)  # every plugin stopped, the faulty one included
    assert stopped.index("c") < stopped.index("b") < stopped.index("a")  # dependents first
    with pytest.raises(hx.KernelClosedError):
        kernel.reload("a")


def run_interrupted(kernel: hx.Kernel, fault: Fault, scenario: str) -> None:
    """The caller is interrupted while ``fault.plugin`` is in ``fault.phase``."""
    fault.armed = False
    if scenario != "load" or fault.phase == "health":
        assert kernel.load_all().ok
    before = live(kernel)
    fault.armed = True
    target = {"cascade": "a", "reload": "b"}.get(scenario)
    with pytest.raises(KeyboardInterrupt):
        if scenario == "load":
            kernel.health() if fault.phase == "health" else kernel.load_all()
        elif target is not None:
            kernel.reload(target)
        elif scenario == "unload":
            kernel.unload("a")
        else:
            kernel.close()
    assert fault.interrupted and fault.taken.is_set()
    if scenario == "close":
        assert kernel._ops.closed and {kernel.state(n) for n in NAMES} == {hx.PluginState.STOPPED}
        return
    now = live(kernel)
    if scenario == "load" and fault.phase != "health":  # what started stays, nothing more
        assert set(now) == {"a", "b"}  # b's phase finished; c and d were not begun
        assert {kernel.state(n) for n in "cd"} == {hx.PluginState.REGISTERED}
        assert kernel.load_all().order == ["c", "d"]
    elif target is not None and fault.phase != "stop":  # before the swap: rolled back
        assert now == before
        assert any(
            e.kind == "reload_failed" and e.detail == "in interrupt" for e in kernel.events()
        )
    elif target is not None:  # after the swap: the reload finished
        cascade = ["a", "b", "c"] if target == "a" else ["b", "c"]
        assert all(now[n] is not before[n] for n in cascade)
    elif scenario == "unload":
        assert set(now) == {"d"}
    assert_consistent(kernel)
    if "c" in now:
        assert kernel.reload("c").ok  # the next operation works


RUN = {
    "load": run_load,
    "reload": run_reload,
    "cascade": run_reload,
    "unload": run_unload,
    "close": run_close,
}


def test_the_matrix_covers_every_phase_and_mode():
    phases = {phase for row in SCENARIOS.values() for phase in row}
    assert phases == {"init", "start", "stop", "health", "export_state", "import_state"}
    assert len(matrix()) == sum(len(row) for row in SCENARIOS.values()) * len(MODES) + 3


# -- the guarding-plugin column --------------------------------------------------------------
#
# A plugin that guards requests (``required = True``, as custom-auth is) misbehaves in one
# phase, under a real gateway (uvicorn on loopback) probed without a token all along: no
# request is ever served unauthenticated. While the guard serves, a request without its
# token is refused (401); while it does not (failed at load, hung, stopped by a rollback,
# being restarted), every request is answered 503 naming it and the phase.

GUARD_SCENARIOS = {
    "load": ("init", "start"),
    "reload": ("export_state", "init", "import_state", "start", "stop"),
    "restart": ("export_state", "init", "import_state", "start", "stop"),  # stop, then start
}
GUARD_MODES = ("raises", "hangs", "exits", "keyboard")
TOKEN = "let-me-in"


class Refusing:
    """The guard's middleware: 401 without ``Authorization: Bearer let-me-in``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (b"authorization", f"Bearer {TOKEN}".encode()) not in scope.get("headers", []):
            await hx.gateway.error_response(401, "no token", code="missing_token")(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


class Prober:
    """GET /v1/models without a token, in a loop from a thread, every status kept."""

    def __init__(self, url: str):
        self.url = url
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                self.statuses.append(client.get("/v1/models").status_code)
                self._first.set()

    def __enter__(self) -> Prober:
        self._thread.start()
        assert self._first.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def guard_matrix() -> list:
    cases = [
        pytest.param(scenario, phase, mode, id=f"guard-{scenario}-{phase}-{mode}")
        for scenario, phases in GUARD_SCENARIOS.items()
        for phase in phases
        for mode in GUARD_MODES
    ]
    cases += [
        pytest.param("load", "health", mode, id=f"guard-load-health-{mode}") for mode in GUARD_MODES
    ]
    return cases


@pytest.mark.parametrize(("scenario", "phase", "mode"), guard_matrix())
def test_a_guarding_plugin_in_any_fault_serves_no_request_unauthenticated(
    kernel, threads_before, scenario, phase, mode
):
    from _gateway_support import provider_plugin

    fault = Fault("guard", phase, mode)
    methods: dict[str, Any] = dict(NORMAL)
    methods["health_check" if phase == "health" else phase] = fault.method()
    guard = type(
        "Guard",
        (hx.MiddlewarePlugin,),
        {
            "name": "guard",
            "required": True,
            "reload_strategy": "restart" if scenario == "restart" else "hot",
            "get_middleware": lambda self: Refusing,
            **methods,
        },
    )
    kernel.register(provider_plugin("fake"))
    kernel.register(guard)
    fault.armed = scenario == "load"
    kernel.load_all()
    with kernel.serve() as server, Prober(server.url) as prober:
        fault.armed = True
        if phase == "health":
            kernel.health()
        elif scenario != "load":
            with contextlib.suppress(ReloadError):
                kernel.reload("guard")
        fault.armed = False
        seen = len(prober.statuses)
        current = kernel._pool.current.live.get("guard")
        serving = current is not None and not current.stopping
        plain = httpx.get(server.url + "/v1/models")
        token = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        while len(prober.statuses) <= seen:  # the prober saw the outcome too
            prober._first.clear()
            assert prober._first.wait(10)
    if scenario == "load" and phase != "health":
        assert not serving  # it failed at load: nothing serves without it
    if serving:
        assert (plain.status_code, token.status_code) == (401, 200), plain.text
    else:
        for response in (plain, token):
            assert response.status_code == 503, response.text
            message = response.json()["error"]["message"]
            assert "'guard' guards this gateway and is not serving" in message
            assert f"phase {fault.failing_phase}" in message or "phase reload" in message
    assert prober.statuses and 200 not in prober.statuses
    assert set(prober.statuses) <= {401, 503}, set(prober.statuses)
    fault.release.set()
    kernel.close()
