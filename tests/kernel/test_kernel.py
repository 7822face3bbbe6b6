"""Tests for helixlab.kernel._kernel: registry, loading, config, health, threads and loops."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pydantic
import pytest

import helixlab as hx
from helixlab.errors import (
    ConfigError,
    DependencyError,
    HelixError,
    KernelClosedError,
    MissingDependencyError,
    PluginNotFoundError,
    RegistryError,
)

# -- registry ------------------------------------------------------------------------


def test_register_a_class_or_an_instance(kernel, make_plugin):
    given = make_plugin("b")()
    assert kernel.register(make_plugin("a")) == "a"
    assert kernel.register(given) == "b"
    assert kernel.names == ["a", "b"]
    assert kernel.state("a") == hx.PluginState.REGISTERED
    kernel.load_all()
    assert kernel.get("b") is given  # the instance given is the one that runs


def test_a_duplicate_name_is_refused_and_the_first_registration_kept(kernel, make_plugin):
    first = make_plugin("a", version="1.0.0")
    kernel.register(first)
    with pytest.raises(RegistryError, match=r"named 'a' is already registered .*1\.0\.0"):
        kernel.register(make_plugin("a", version="2.0.0"))
    assert kernel.plugin_class("a") is first


def test_unknown_names_raise_a_lookup_error_listing_the_known_ones(kernel, make_plugin):
    kernel.register(make_plugin("logger"))
    with pytest.raises(PluginNotFoundError) as info:
        kernel.state("loger")
    assert isinstance(info.value, LookupError)
    assert str(info.value) == "No plugin named 'loger' is registered. Known plugins: logger."
    with pytest.raises(PluginNotFoundError, match="'logger' is loaded"):
        kernel.get("logger")  # registered, not running


def test_unregister_forgets_a_plugin_and_stops_it_if_running(kernel, make_plugin, journal):
    kernel.register(make_plugin("a"))
    kernel.load_all()
    kernel.unregister("a")
    assert "a" not in kernel
    assert journal.phases("stop") == ["a"]
    assert [e.kind for e in kernel.events("a")][-2:] == ["unloaded", "unregistered"]


def test_unregister_is_refused_while_others_depend_on_it(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",)))
    with pytest.raises(RegistryError, match="'a': b depend"):
        kernel.unregister("a")
    assert "a" in kernel


# -- loading -------------------------------------------------------------------------


def test_load_all_starts_in_dependency_order_then_priority_then_name(kernel, make_plugin):
    kernel.register(make_plugin("z-limiter", deps=("logger",)))
    kernel.register(make_plugin("logger"))
    kernel.register(make_plugin("auth", deps=("logger",), priority=5))
    kernel.register(make_plugin("b-tool"))
    report = kernel.load_all()
    assert report == ["b-tool", "logger", "auth", "z-limiter"]
    assert report.ok
    assert all(kernel.state(n) == hx.PluginState.ACTIVE for n in kernel.names)
    assert [e.kind for e in kernel.events("logger")] == ["registered", "initialized", "started"]


def test_a_failing_plugin_skips_its_dependents_and_spares_the_rest(kernel, make_plugin):
    def broken(self, ctx, config):
        raise ValueError("no database")

    kernel.register(make_plugin("db", init=broken))
    kernel.register(make_plugin("cache", deps=("db",)))
    kernel.register(make_plugin("api", deps=("cache",)))
    kernel.register(make_plugin("logger"))
    report = kernel.load_all()

    assert report.order == ["logger"]
    assert report.failed["db"].phase == "init"
    assert report.skipped == {
        "cache": "needs 'db', which failed",
        "api": "needs 'cache', which is not running",
    }
    assert not report.ok
    assert str(report).splitlines()[1] == "failed  db in init: ValueError: no database"
    assert kernel.state("db") == hx.PluginState.FAILED
    assert kernel.state("cache") == hx.PluginState.REGISTERED
    assert kernel.get("logger") is not None
    row = {r.name: r for r in kernel.info()}["db"]
    assert row.error == "init: ValueError: no database"


def test_load_starts_missing_dependencies_first(kernel, make_plugin, journal):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",)))
    kernel.register(make_plugin("other"))
    assert kernel.load("b") == ["a", "b"]
    assert kernel.load("b") == []  # already running
    assert kernel.state("other") == hx.PluginState.REGISTERED


def test_load_refuses_a_graph_with_a_missing_dependency(kernel, make_plugin):
    kernel.register(make_plugin("b", deps=("a",)))
    with pytest.raises(MissingDependencyError, match="'b' depends on 'a'"):
        kernel.load_all()
    assert kernel.state("b") == hx.PluginState.REGISTERED


def test_unload_stops_dependents_first_and_leaves_the_rest(kernel, make_plugin, journal):
    for name, deps in [("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ())]:
        kernel.register(make_plugin(name, deps=deps))
    kernel.load_all()
    assert kernel.unload("a") == ["c", "b", "a"]
    assert journal.phases("stop") == ["c", "b", "a"]
    assert [kernel.state(n) for n in "abcd"] == ["stopped"] * 3 + ["active"]
    with pytest.raises(PluginNotFoundError):
        kernel.get("b")


def test_close_stops_everything_dependents_first_and_refuses_further_work(
    make_kernel, make_plugin, journal
):
    k = make_kernel()
    k.register(make_plugin("a"))
    k.register(make_plugin("b", deps=("a",)))
    k.load_all()
    k.close()
    k.close()  # idempotent
    assert journal.phases("stop") == ["b", "a"]
    with pytest.raises(KernelClosedError):
        k.reload("a")
    assert "closed" in repr(k)


def test_run_with_a_timeout_refused_closes_the_coroutine_it_never_began(make_kernel):
    k = make_kernel()

    async def nothing() -> None:
        pass

    async def on_the_loop() -> None:
        with pytest.raises(HelixError, match="own loop"):
            k.run(coro := nothing(), timeout=1)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    k.run(on_the_loop())
    k.close()
    with pytest.raises(KernelClosedError):
        k.run(coro := nothing(), timeout=1)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_close_stops_running_plugins_even_when_a_later_registration_is_cyclic(
    make_kernel, make_plugin, journal
):
    k = make_kernel()
    k.register(make_plugin("a"))
    k.load_all()
    k.register(make_plugin("x", deps=("y",)))
    k.register(make_plugin("y", deps=("x",)))
    k.close()
    assert journal.phases("stop") == ["a"]


# -- configuration ---------------------------------------------------------------------


class LimiterConfig(pydantic.BaseModel):
    requests_per_second: int = 10
    burst_size: int = 20


YAML = """\
plugins:
  logger:
    enabled: true
  rate-limiter:
    enabled: true
    priority: 3
    depends_on: [logger]
    config:
      requests_per_second: 5
  unused:
    enabled: false
"""


def test_apply_config_sets_config_priority_extra_deps_and_enabled(kernel, make_plugin):
    got = {}

    def init(self, ctx, config):
        got["config"] = config
        got["logger"] = ctx.get("logger")

    kernel.register(make_plugin("logger"))
    kernel.register(make_plugin("rate-limiter", config_model=LimiterConfig, init=init))
    kernel.register(make_plugin("unused"))
    kernel.apply_config(YAML, source="plugins.yaml")
    assert kernel.load_all() == ["logger", "rate-limiter"]
    assert got["config"] == LimiterConfig(requests_per_second=5)
    assert got["logger"] is kernel.get("logger")
    assert kernel.graph.dependencies("rate-limiter") == ["logger"]
    assert kernel.state("unused") == hx.PluginState.REGISTERED
    with pytest.raises(DependencyError, match="'unused' is disabled"):
        kernel.load("unused")


def test_apply_config_reports_every_problem_and_changes_nothing(kernel, make_plugin):
    kernel.register(make_plugin("rate-limiter", config_model=LimiterConfig))
    bad = "plugins:\n  rate-limiter:\n    config:\n      burst_size: many\n  ghost: {}\n"
    with pytest.raises(ConfigError) as info:
        kernel.apply_config(bad, source="plugins.yaml")
    text = str(info.value)
    assert len(info.value.problems) == 1  # 'ghost' may be registered later: not a problem yet
    assert "plugins.yaml:4" in text and "burst_size" in text
    assert kernel.entry("rate-limiter").config == LimiterConfig()
    assert kernel._book.pending == {}  # a refused config keeps nothing


def test_a_configured_plugin_that_nobody_registers_stops_load_all_with_its_line(kernel):
    kernel.apply_config("plugins:\n  custom-logger: {}\n  ghost: {}\n", source="plugins.yaml")
    with pytest.raises(ConfigError) as info:
        kernel.load_all()
    assert "plugins.yaml:3: ghost: no plugin named 'ghost' is registered" in str(info.value)
    assert kernel.state("custom-logger") == hx.PluginState.REGISTERED  # nothing started


def test_apply_config_to_a_running_plugin_reloads_it_with_its_dependents(kernel, make_plugin):
    kernel.register(make_plugin("rate-limiter", config_model=LimiterConfig))
    kernel.register(make_plugin("auth", deps=("rate-limiter",)))
    kernel.load_all()
    old = kernel.get("auth")
    (report,) = kernel.apply_config({"plugins": {"rate-limiter": {"config": {"burst_size": 1}}}})
    assert report.order == ["rate-limiter", "auth"]
    assert kernel.get("auth") is not old
    assert kernel.entry("rate-limiter").config.burst_size == 1
    assert kernel.events()[-1].kind == "configured"


def test_a_saved_config_whose_entries_only_moved_reloads_nothing(kernel, make_plugin):
    kernel.register(make_plugin("rate-limiter", config_model=LimiterConfig))
    kernel.register(make_plugin("auth", deps=("rate-limiter",)))
    kernel.load_all()
    text = "plugins:\n  rate-limiter:\n    config:\n      burst_size: 3\n  auth: {}\n"
    (first,) = kernel.apply_config(text, source="plugins.yaml")
    assert first.order == ["rate-limiter", "auth"]
    old = kernel.get("rate-limiter")
    moved = "# limits\n\nplugins:\n  auth: {}\n  rate-limiter:\n    config:\n      burst_size: 3\n"
    assert kernel.apply_config(moved, source="plugins.yaml") == []  # no reload at all
    assert kernel.get("rate-limiter") is old
    # what is reported later points at where the entry is now
    assert kernel.entry("rate-limiter").spec.line == 5
    (changed,) = kernel.apply_config(moved.replace("3", "4"), source="plugins.yaml")
    assert changed.order == ["rate-limiter", "auth"]


# -- health ----------------------------------------------------------------------------


def test_health_reports_each_plugin_and_each_way_of_being_unhealthy(kernel, make_plugin):
    def raises(self, ctx):
        raise ConnectionError("upstream down")

    kernel.register(make_plugin("ok"))
    kernel.register(make_plugin("raises", health_check=raises))
    kernel.register(make_plugin("false", health_check=lambda self, ctx: False))
    kernel.register(make_plugin("says", health_check=lambda self, ctx: "disk 99% full"))
    kernel.load_all()
    health = kernel.health()
    assert [str(h) for h in health.values()] == [
        "false: unhealthy",
        "ok: healthy",
        "raises: unhealthy (ConnectionError: upstream down)",
        "says: unhealthy (disk 99% full)",
    ]
    changed = [(e.plugin, e.detail) for e in kernel.events() if e.kind == "health_changed"]
    assert ("ok", "healthy") in changed and ("raises", "unhealthy") in changed
    kernel.health()  # unchanged: no new health_changed events
    assert len([e for e in kernel.events() if e.kind == "health_changed"]) == len(changed)
    assert {r.name: r.health for r in kernel.info()}["raises"] == "unhealthy"


def test_a_hanging_health_check_is_reported_unhealthy_not_waited_on(make_plugin):
    async def hangs(self, ctx):
        await asyncio.Event().wait()  # never set

    with hx.Kernel(timeouts=hx.Timeouts(health=0.2)) as k:
        for i in range(10):
            k.register(make_plugin(f"hung-{i}", health_check=hangs))
        k.register(make_plugin("fine"))
        k.load_all()
        started = time.perf_counter()
        health = k.health()
        elapsed = time.perf_counter() - started
    assert health["fine"].healthy
    assert [h.detail for n, h in health.items() if n != "fine"] == ["no answer within 0.2s"] * 10
    assert elapsed < 10 * 0.2  # concurrently: not one timeout after another


def test_a_failed_plugin_shows_as_unhealthy(kernel, make_plugin):
    def broken(self, ctx):
        raise RuntimeError("nope")

    kernel.register(make_plugin("broken", start=broken))
    kernel.load_all()
    assert str(kernel.health()["broken"]) == "broken: unhealthy (start: RuntimeError: nope)"


# -- calling from threads and loops ------------------------------------------------------


def test_the_sync_api_works_inside_a_running_event_loop_like_a_notebook_cell(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",)))

    async def cell():
        assert kernel.load_all() == ["a", "b"]
        report = kernel.reload("a")
        health = kernel.health()
        twin = await kernel.areload("b")
        await kernel.aunload("b")
        await kernel.aload("b")
        return report, health, twin, await kernel.ahealth()

    report, health, twin, again = asyncio.run(cell())
    assert report.order == ["a", "b"] and twin.order == ["b"]
    assert all(health.values()) and all(again.values())
    assert kernel.reload_count("b") == 2


def test_async_twins_register_load_configure_and_close(make_plugin):
    async def main():
        async with hx.Kernel() as k:
            await k.aregister(make_plugin("a", config_model=LimiterConfig))
            await k.aload_all()
            report = await k.aconfigure("a", {"burst_size": 2})
            await k.aunregister("a")
            return report, k.names

    report, names = asyncio.run(main())
    assert report.order == ["a"] and names == []


def test_two_threads_reloading_at_once_both_succeed_one_after_the_other(kernel, make_plugin):
    inside = []
    overlap = []
    lock = threading.Lock()

    async def start(self, ctx):
        with lock:
            inside.append(self)
            overlap.append(len(inside))
        await asyncio.sleep(0)  # yield the loop: a second reload could run now
        with lock:
            inside.remove(self)

    kernel.register(make_plugin("a", start=start))
    kernel.load_all()
    barrier = threading.Barrier(2)
    reports = []

    def reload():
        barrier.wait()
        reports.append(kernel.reload("a"))

    threads = [threading.Thread(target=reload) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.ok for r in reports] == [True, True]
    assert max(overlap) == 1
    assert kernel.reload_count("a") == 2
    kinds = [e.kind for e in kernel.events("a") if e.kind in ("reloading", "reloaded")]
    assert kinds == ["reloading", "reloaded"] * 2


def test_reads_answer_while_a_reload_hangs_in_start(kernel, make_plugin):
    gate = {}
    entered = threading.Event()

    async def start(self, ctx):
        if self.version == "2.0.0":
            gate["loop"], gate["event"] = asyncio.get_running_loop(), asyncio.Event()
            entered.set()
            await gate["event"].wait()

    kernel.register(make_plugin("a", start=start))
    kernel.load_all()
    old = kernel.get("a")
    v2 = make_plugin("a", version="2.0.0", start=start)
    reloader = threading.Thread(target=kernel.reload, args=(v2,))
    reloader.start()
    assert entered.wait(5)
    try:
        assert kernel.get("a") is old
        assert kernel.state("a") == hx.PluginState.ACTIVE
        assert kernel.info()[0].version == "1.0.0"
        assert kernel.events()[-1].kind == "reloading"
        assert kernel.preview_reload("a") == ["a"]
    finally:
        gate["loop"].call_soon_threadsafe(gate["event"].set)
        reloader.join()
    assert kernel.get("a").version == "2.0.0"


def test_a_sync_call_from_a_plugin_on_the_kernel_loop_says_to_await_the_twin(kernel, make_plugin):
    async def start(self, ctx):
        ctx.kernel.health()

    kernel.register(make_plugin("a", start=start))
    report = kernel.load_all()
    assert "await its async twin" in str(report.failed["a"])


def test_info_and_repr_describe_each_plugin(kernel, make_plugin):
    kernel.register(make_plugin("a", description="first"))
    kernel.register(make_plugin("b", deps=("a",)))
    kernel.load_all()
    rows = kernel.info()
    assert [str(r) for r in rows] == [
        "a 1.0.0 (plugin) active, health unknown, reloads 0",
        "b 1.0.0 (plugin) active, health unknown, reloads 0 <- a",
    ]
    assert rows[0].dependents == ("b",) and rows[0].description == "first"
    assert repr(kernel) == "<helixlab.Kernel: 2/2 active>"


def test_config_problems_of_every_kind_are_reported_together(kernel):
    """A parse problem, a bad priority and a config the model refuses: one error, three lines."""
    text = (
        "plugins:\n"
        "  custom-logger:\n"
        "    priority: nope\n"
        "  zz:\n"
        "    priority: high\n"
        "  rate-limiter:\n"
        "    config:\n"
        "      burst_size: lots\n"
    )
    with pytest.raises(hx.ConfigError) as caught:
        kernel.apply_config(text)
    lines = {(p.line, p.plugin) for p in caught.value.problems}
    assert lines == {(3, "custom-logger"), (5, "zz"), (8, "rate-limiter")}
    assert kernel.names == []  # nothing registered from a refused config


def test_a_built_in_plugin_brings_its_built_in_dependencies(kernel):
    """request-logger logs through custom-logger: naming request-logger alone is enough."""
    kernel.apply_config("plugins:\n  request-logger:\n    config: {log_body: false}\n")
    assert set(kernel.names) == {"request-logger", "custom-logger"}
    assert kernel.load_all().order == ["custom-logger", "request-logger"]


def test_the_kernel_imports_nothing_from_the_layers_above_it():
    import ast
    from pathlib import Path

    root = Path(hx.__file__).parent
    files = [*sorted((root / "kernel").glob("*.py")), root / "errors.py", root / "_reprs.py"]
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names]
                if any(part in ("notebook", "gateway") for n in names for part in n.split(".")):
                    found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_kernel_objects_draw_as_html_through_what_the_notebook_registered(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    report = kernel.load_all()
    assert "<" in report._repr_html_() and "a" in kernel._repr_html_()
    assert "KernelClosedError" in hx.KernelClosedError("x")._repr_html_()
