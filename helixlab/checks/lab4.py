"""Lab 4 — hot reload with dependencies: the checks behind ``%helix check lab4``.

What the lab builds (see ``labs/lab4_hot_reload.ipynb``): three plugins in a chain,
``counter-store`` (counts visits per page: ``incr(page)``, ``count(page)``) ←
``counter-service`` (``hit(page)``) ← ``counter-api`` (``handle(page)``). You make the store
hand its counts to its next version (``export_state`` / ``import_state``) and make the
service use the store it is bound to.

How the checks work, so you can read them and trust them: the first one looks at the
notebook's own kernel (``helix``). The others take the three classes ``helix`` has
registered, load them into a fresh, private :class:`~helixlab.Kernel` and perform reloads
there — a plain one, and one with a version of the store whose ``start`` fails — then call
the plugins and look at what they answer. Your notebook's plugins are left alone, and the
checks never read your source code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import ReloadError, describe
from ..kernel import Kernel, Plugin, PluginState, Timeouts
from . import _probes
from ._core import Missing, Probe, lab

__all__ = ["API", "NAMES", "SERVICE", "STORE"]

STORE, SERVICE, API = "counter-store", "counter-service", "counter-api"
NAMES = (STORE, SERVICE, API)

#: Short, so that a plugin that hangs fails its check quickly instead of blocking the cell.
TIMEOUTS = Timeouts(init=5, start=5, stop=5, health=2, export_state=5, import_state=5, drain=5)

check = lab("lab4", "hot reload with dependencies", plugins=NAMES)


def _classes(probe: Probe) -> list[type[Plugin]]:
    kernel = probe.kernel
    missing = [name for name in NAMES if name not in kernel and name not in probe.refused]
    if missing:
        raise Missing(
            f"helix has no plugin named {', '.join(map(repr, missing))}. Run the "
            f"`%%helix plugin` cell of step 1 (and fix what it reports)."
        )
    return [probe.plugin_class(name) for name in NAMES]


@contextlib.contextmanager
def _scratch(probe: Probe) -> Iterator[Kernel]:
    """A private kernel running the learner's three classes."""
    with _probes.private_kernel(TIMEOUTS, *_classes(probe)) as kernel:
        report = kernel.load_all()
        if not report.ok:
            raise Missing(f"a fresh kernel could not load the three plugins: {report}")
        yield kernel


def _call(plugin: Plugin, method: str, *args: Any) -> Any:
    fn = getattr(plugin, method, None)
    if not callable(fn):
        raise Missing(f"{plugin.name} has no method {method}(); it is given in step 1.")
    try:
        return fn(*args)
    except Exception as exc:
        call = f"{plugin.name}.{method}({', '.join(map(repr, args))})"
        raise Missing(f"{call} raised {describe(exc)}.") from None


def _reload(kernel: Kernel, target: Any) -> Any:
    try:
        return kernel.reload(target)
    except ReloadError as exc:
        raise Missing(f"the reload failed: {exc}") from None


@check("counter-store, counter-service and counter-api are active in helix")
def all_active(probe: Probe) -> None:
    _classes(probe)
    for name in NAMES:
        _probes.require_not_refused(probe, name)
    states = {name: probe.kernel.state(name) for name in NAMES}
    down = [f"{n} is {s.value}" for n, s in states.items() if s != PluginState.ACTIVE]
    if down:
        raise Missing(
            f"{'; '.join(down)}. Re-run the `%%helix plugin` cell of step 1; `%helix list` "
            f"shows each plugin's state and error."
        )


@check("reloading counter-store cascades to counter-service, then counter-api (report.order)")
def cascade_order(probe: Probe) -> None:
    with _scratch(probe) as kernel:
        report = _reload(kernel, STORE)
        if list(report.order) != list(NAMES):
            raise Missing(
                f"the reload touched {' -> '.join(report.order)}; expected "
                f"{' -> '.join(NAMES)}. counter-service must declare dependencies = "
                f'("counter-store>=1.0",) and counter-api ("counter-service",).'
            )
        reloads = {name: kernel.reload_count(name) for name in NAMES}
        if set(reloads.values()) != {1}:
            raise Missing(f"each plugin should have been reloaded once; counts: {reloads}.")


@check("the counts survive a reload of counter-store (export_state / import_state)")
def state_survives(probe: Probe) -> None:
    with _scratch(probe) as kernel:
        store = kernel.get(STORE)
        for page in ("/home", "/home", "/about"):
            _call(store, "incr", page)
        _reload(kernel, STORE)
        new = kernel.get(STORE)
        if new is store:
            raise Missing("after the reload counter-store is still the same instance.")
        counts = {page: _call(new, "count", page) for page in ("/home", "/about")}
        if counts != {"/home": 2, "/about": 1}:
            raise Missing(
                f"before the reload the store counted {{'/home': 2, '/about': 1}}; the new "
                f"instance counts {counts}. export_state() must return the counts and "
                f"import_state(state) must take them into the new instance (step 2)."
            )
        _hands_over_a_copy(new)


def _hands_over_a_copy(store: Plugin) -> None:
    """What export_state() returns is not the store's own dict: changing it changes nothing.

    The kernel copies what it hands over, but a state handed to anyone else (a test, a
    snapshot, another kernel) must not be a door into the running store.
    """
    exported = _call(store, "export_state")
    if not isinstance(exported, dict):
        return
    exported["/lab4-shared"] = 99
    if _call(store, "count", "/lab4-shared") == 99:
        raise Missing(
            "export_state() returns the store's own dict: a key added to what it returned "
            "shows up in the running store's counts. Whoever receives the state can then "
            "change the store under it (and a rolled-back reload would keep the changes): "
            "return a copy, dict(self.counts) (step 2)."
        )


@check("a failing new version rolls back, and the old counter-store keeps its counts")
def rollback_keeps_old(probe: Probe) -> None:
    with _scratch(probe) as kernel:
        store = kernel.get(STORE)
        _call(store, "incr", "/home")
        _call(store, "incr", "/home")
        cls = kernel.plugin_class(STORE)

        def start(self: Plugin, ctx: Any) -> None:
            # what a new version may do before it fails: change the counts it took over
            incr = getattr(self, "incr", None)
            if callable(incr):
                incr("/home")
            raise RuntimeError("version 9 cannot start")

        broken = type(cls.__name__, (cls,), {"version": "9.0.0", "start": start})
        try:
            kernel.reload(broken)
        except ReloadError as exc:
            if exc.report is None or not exc.report.rolled_back:
                raise Missing(f"the failed reload was not rolled back: {exc}") from None
        else:
            raise Missing("a version of counter-store whose start() raises was accepted.")
        if kernel.get(STORE) is not store or kernel.plugin_class(STORE) is not cls:
            raise Missing("after the rollback, counter-store is not the old instance any more.")
        if kernel.state(STORE) != PluginState.ACTIVE:
            raise Missing(f"after the rollback counter-store is {kernel.state(STORE).value}.")
        count = _call(store, "count", "/home")
        if count == 3:
            raise Missing(
                "the failed new version counted one visit of /home before its start() "
                "raised, and the old store, which kept serving, counts it too (3 instead of "
                "2): both instances share one dict. export_state() must return a copy "
                "(dict(self.counts)), so that a rolled-back version cannot change the old "
                "one's counts (step 2)."
            )
        if count != 2:
            raise Missing(
                f"the old store counted 2 visits of /home before the failed reload and "
                f"{count} after it. export_state() must leave the old instance's counts "
                f"alone (return a copy, don't move them out): a reload can still roll back."
            )


@check("after a reload, counter-service and counter-api use the new counter-store")
def bound_to_new_store(probe: Probe) -> None:
    with _scratch(probe) as kernel:
        _reload(kernel, STORE)
        store, api = kernel.get(STORE), kernel.get(API)
        before = _call(store, "count", "/lab4")
        _call(api, "handle", "/lab4")
        after = _call(store, "count", "/lab4")
        if after != before + 1:
            raise Missing(
                "a request to counter-api after the reload did not reach the new "
                "counter-store. In counter-service's start(), keep the store that "
                'ctx.get("counter-store") returns: during a reload that is the new '
                "instance (step 3)."
            )
