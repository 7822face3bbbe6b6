"""Tests for helixlab.kernel._reload: cascade, handover, swap, drain, rollback, define()."""

from __future__ import annotations

import threading

import pydantic
import pytest

import helixlab as hx
from helixlab.errors import ConfigError, RegistryError, ReloadError


@pytest.fixture
def chain(kernel, make_plugin):
    """a <- b <- c, plus an unrelated d, all running."""
    for name, deps in [("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ())]:
        kernel.register(make_plugin(name, deps=deps))
    kernel.load_all()
    return kernel


def test_reload_cascades_to_every_transitive_dependent_and_nothing_else(chain, journal):
    before = {n: chain.get(n) for n in "abcd"}
    journal.clear()
    report = chain.reload("a")
    assert report.order == ["a", "b", "c"]
    assert report.started == ["a", "b", "c"]
    assert report.stopped == ["c", "b", "a"]  # old instances, dependents first
    assert [chain.get(n) is before[n] for n in "abcd"] == [False, False, False, True]
    assert [chain.reload_count(n) for n in "abcd"] == [1, 1, 1, 0]
    assert journal.phases("start") == ["a", "b", "c"]
    assert journal.phases("stop") == ["c", "b", "a"]
    # every new start happens before any old stop: one swap in between
    assert [p for p, *_ in journal].index("stop") == 6
    assert str(report).splitlines()[0] == "reloaded a: 3 plugin(s), dependencies first"
    assert chain.last_cascade == ("a", "b", "c")


def test_the_cascade_is_known_by_the_first_event_of_a_reload_or_definition(chain, make_plugin):
    """A view that redraws on events (the graph widget) reads ``last_cascade``: by the
    time a reload's or a definition's events arrive, it names what they touch."""
    seen: list[tuple[str, str, tuple[str, ...]]] = []
    chain.subscribe(lambda e: seen.append((e.kind, e.plugin, chain.last_cascade)))
    chain.reload("a")
    assert {cascade for kind, _, cascade in seen if kind == "reloaded"} == {("a", "b", "c")}
    seen.clear()
    chain.define([make_plugin("e", deps=("d",))], source="<cell 1>")
    assert seen and {cascade for kind, _, cascade in seen if kind != "registered"} == {("e",)}
    assert chain.last_cascade == ("e",)


def test_new_instances_are_bound_to_the_new_instances_of_their_dependencies(kernel, make_plugin):
    bound = {}

    def init(self, ctx, config):
        bound[self] = ctx.get("a")

    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), init=init))
    kernel.load_all()
    kernel.reload("a")
    assert bound[kernel.get("b")] is kernel.get("a")


def test_reload_without_cascade_touches_only_the_target(chain):
    old_b = chain.get("b")
    assert chain.reload("b", cascade=False).order == ["b"]
    assert chain.get("b") is not old_b
    assert chain.reload_count("c") == 0


def test_state_is_handed_from_the_old_instance_to_the_new_one(kernel, make_plugin):
    def export_state(self):
        return {"hits": self.hits}

    def import_state(self, state):
        self.hits = state["hits"]

    counter = make_plugin("counter", hits=0, export_state=export_state, import_state=import_state)
    kernel.register(counter)
    kernel.load_all()
    kernel.get("counter").hits = 41
    kernel.reload("counter")
    kernel.get("counter").hits += 1
    kernel.reload("counter")
    assert kernel.get("counter").hits == 42


def test_reload_with_a_redefined_class_replaces_it_with_dependents(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a>=1",)))
    kernel.load_all()
    v2 = make_plugin("a", version="2.0.0")
    report = kernel.reload(v2)
    assert report.versions == {"a": ("1.0.0", "2.0.0"), "b": ("1.0.0", "1.0.0")}
    assert isinstance(kernel.get("a"), v2) and kernel.plugin_class("a") is v2
    assert [e.detail for e in kernel.events() if e.kind == "reloaded"] == [
        "1.0.0 -> 2.0.0",
        "1.0.0 (new instance)",
    ]
    assert "  1. a 1.0.0 -> 2.0.0" in str(report)


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ({"name": "ghost"}, "no plugin of that name is registered"),
        ({"name": "a", "dependencies": ("missing",)}, "'a' depends on 'missing'"),
        ({"name": "a", "version": "0.5"}, r"'b' needs 'a>=1'"),
        ({"name": "a", "dependencies": ("b",)}, "cycle detected: a -> b -> a"),
    ],
)
def test_an_invalid_reload_is_refused_before_touching_anything(kernel, make_plugin, new, message):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a>=1",)))
    kernel.load_all()
    before = kernel.get("a"), len(kernel.events())
    with pytest.raises(ReloadError, match=message) as info:
        kernel.reload(type("New", (hx.Plugin,), new))
    assert info.value.phase == "validate"
    assert (kernel.get("a"), len(kernel.events())) == before
    assert kernel.plugin_class("a").version == "1.0.0"


def test_reload_of_a_name_that_is_not_registered_or_not_a_target(kernel):
    with pytest.raises(hx.PluginNotFoundError):
        kernel.reload("ghost")
    with pytest.raises(TypeError, match="at least one"):
        kernel.reload()
    with pytest.raises(TypeError, match="not 42"):
        kernel.reload(42)


def test_reload_also_loads_a_dependent_that_had_failed(kernel, make_plugin):
    def needs_ready(self, ctx, config):
        if not getattr(ctx.get("a"), "ready", False):
            raise RuntimeError("a is not ready")

    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), init=needs_ready))
    assert kernel.load_all().failed["b"].phase == "init"
    report = kernel.reload(make_plugin("a", version="1.1.0", ready=True))
    assert report.order == ["a"] and report.loaded == ["b"]
    assert kernel.state("b") == hx.PluginState.ACTIVE


# -- drain -------------------------------------------------------------------------------


def test_a_lease_keeps_the_old_instance_serving_until_released(kernel, make_plugin, seen):
    old_stopped = threading.Event()

    def stop(self, ctx):
        if self.version == "1.0.0":
            old_stopped.set()

    kernel.register(make_plugin("a", stop=stop))
    kernel.load_all()
    lease = kernel.lease()
    swapped = seen("reloaded", "a")
    reloader = threading.Thread(
        target=kernel.reload, args=(make_plugin("a", version="2", stop=stop),)
    )
    reloader.start()
    assert swapped.wait(5)
    # new requests see the new version; the lease still works on the old one
    assert kernel.get("a").version == "2"
    assert lease.get("a").version == "1.0.0"
    assert not old_stopped.is_set() and reloader.is_alive()
    lease.release()
    reloader.join(5)
    assert old_stopped.is_set() and not reloader.is_alive()


def test_a_lease_never_released_delays_the_stop_only_until_the_drain_timeout(make_plugin):
    with hx.Kernel(timeouts=hx.Timeouts(drain=0.1)) as k:
        k.register(make_plugin("a"))
        k.load_all()
        with k.lease() as lease:
            report = k.reload("a")
            assert report.stopped == ["a"]
            assert "drain timed out after 0.1s" in k.events()[-1].detail
            assert lease.get("a") is not k.get("a")


def test_leases_on_the_current_generation_do_not_block_a_reload_of_nothing_else(kernel, chain):
    with kernel.lease() as lease:
        assert lease.instances.keys() == {"a", "b", "c", "d"}
    assert kernel.reload("d").ok


# -- restart strategy ------------------------------------------------------------------------


def test_a_restart_plugin_is_stopped_before_its_new_instance_starts(kernel, make_plugin, journal):
    kernel.register(make_plugin("port", reload_strategy="restart"))
    kernel.load_all()
    journal.clear()
    report = kernel.reload(make_plugin("port", version="2.0.0", reload_strategy="restart"))
    assert journal == [
        ("stop", "port", "1.0.0"),
        ("init", "port", "2.0.0"),
        ("start", "port", "2.0.0"),
    ]
    assert report.strategy == {"port": "restart"}
    assert "(restart)" in str(report)


def test_a_failed_restart_restarts_the_old_instance(kernel, make_plugin, journal):
    def broken(self, ctx):
        raise OSError("address in use")

    kernel.register(make_plugin("port", reload_strategy="restart"))
    kernel.load_all()
    old = kernel.get("port")
    journal.clear()
    with pytest.raises(ReloadError) as info:
        kernel.reload(make_plugin("port", version="2.0.0", reload_strategy="restart", start=broken))
    assert (info.value.plugin, info.value.phase) == ("port", "start")
    assert info.value.report.rolled_back
    assert journal == [("stop", "port", "1.0.0"), ("init", "port", "2.0.0"),
                       ("start", "port", "1.0.0")]  # fmt: skip
    assert kernel.get("port") is old and kernel.state("port") == hx.PluginState.ACTIVE


# -- preview, configure ----------------------------------------------------------------------


def test_preview_reload_lists_the_cascade_and_touches_nothing(chain, journal):
    journal.clear()
    count = len(chain.events())
    assert chain.preview_reload("a") == ["a", "b", "c"]
    assert chain.preview_reload("b", "d") == ["b", "c", "d"]
    assert chain.preview_reload("a", cascade=False) == ["a"]
    assert journal == [] and len(chain.events()) == count
    assert chain.reload_count("a") == 0


class LimiterConfig(pydantic.BaseModel):
    requests_per_second: int = 10
    burst_size: int = 20


def test_configure_validates_then_reloads_with_dependents(kernel, make_plugin):
    got = []
    kernel.register(
        make_plugin(
            "limiter",
            config_model=LimiterConfig,
            init=lambda self, ctx, config: got.append(config),
        )
    )
    kernel.register(make_plugin("auth", deps=("limiter",)))
    kernel.load_all()
    report = kernel.configure("limiter", {"burst_size": 5})
    assert report.order == ["limiter", "auth"]
    assert got[-1] == LimiterConfig(burst_size=5)
    assert kernel.get("limiter") is not None and kernel.reload_count("auth") == 1
    assert kernel.events()[-1].kind == "configured"

    old = kernel.get("limiter")
    with pytest.raises(ConfigError, match="burst_size"):
        kernel.configure("limiter", {"burst_size": "lots"})
    with pytest.raises(ConfigError, match="burts_size"):
        kernel.configure("limiter", {"burts_size": 1})
    assert kernel.get("limiter") is old
    assert kernel.entry("limiter").config.burst_size == 5


def test_configure_a_plugin_not_running_only_stores_the_config(kernel, make_plugin):
    kernel.register(make_plugin("limiter", config_model=LimiterConfig))
    assert kernel.configure("limiter", {"requests_per_second": 1}) is None
    assert kernel.info()[0].config == {"requests_per_second": 1, "burst_size": 20}


# -- define() -------------------------------------------------------------------------------


def test_define_registers_and_loads_new_classes(kernel, make_plugin):
    report = kernel.define([make_plugin("a"), make_plugin("b", deps=("a",))], source="cell 1")
    assert report.loaded == ["a", "b"]
    assert kernel.info()[1].origin == "cell"


CELL = """
import helixlab as hx

class A(hx.Plugin):
    name = "a"

    def hello(self):
        return GREETING

class B(hx.Plugin):
    name = "b"
    dependencies = ("a",)

class C(hx.Plugin):
    name = "c"
"""


def run_cell(greeting: str) -> list[type[hx.Plugin]]:
    """What a ``%%helix plugin`` cell hands the kernel: the classes its code defines."""
    namespace: dict = {}
    exec(CELL.replace("GREETING", repr(greeting)), namespace)
    return [namespace[n] for n in "ABC"]


def test_define_again_reloads_only_what_changed_with_its_dependents(kernel):
    kernel.define(run_cell("hi"), source="cell", unit="cell-1")
    unchanged = kernel.define(run_cell("hi"), source="cell", unit="cell-1")
    assert unchanged.order == [] and kernel.reload_count("a") == 0
    changed = kernel.define(run_cell("hello"), source="cell", unit="cell-1")
    assert changed.order == ["a", "b"]
    assert kernel.get("a").hello() == "hello"
    assert kernel.reload_count("c") == 0


def test_define_refuses_a_rename_and_duplicates(kernel, make_plugin):
    kernel.define([make_plugin("a")], source="cell", unit="cell-1")
    with pytest.raises(ReloadError, match="no longer defines 'a'"):
        kernel.define([make_plugin("renamed")], source="cell", unit="cell-1")
    assert "renamed" not in kernel and kernel.state("a") == hx.PluginState.ACTIVE
    with pytest.raises(RegistryError, match="more than once"):
        kernel.define([make_plugin("x"), make_plugin("x")], source="cell 2")
    with pytest.raises(RegistryError, match="defines no Plugin"):
        kernel.define([], source="cell 3")


def test_reload_without_cascade_rebinds_running_dependents(kernel, make_plugin):
    """A dependent that looks its dependency up per call sees the new instance."""

    def start(self, ctx):
        self.ctx = ctx

    base = make_plugin("base")
    user = make_plugin("user", deps=("base",), start=start)
    kernel.register(base)
    kernel.register(user)
    kernel.load_all()
    old_user = kernel.get("user")
    report = kernel.reload("base", cascade=False)
    assert report.order == ["base"]
    assert kernel.get("user") is old_user  # not restarted
    assert old_user.ctx.get("base") is kernel.get("base")


def test_a_restart_plugin_whose_old_version_cannot_restart_leaves_service(kernel, make_plugin):
    """Neither version runs: the kernel says so, and nothing keeps using the dead instance."""
    restarts = []

    def start(self, ctx):
        restarts.append(self)
        if len(restarts) > 1:
            raise RuntimeError("port still in use")

    old = make_plugin("db", reload_strategy="restart", start=start)
    user = make_plugin("app", deps=("db",))
    kernel.register(old)
    kernel.register(user)
    kernel.load_all()

    def broken(self, ctx):
        raise RuntimeError("new version broken")

    new = make_plugin("db", version="2.0.0", reload_strategy="restart", start=broken)
    with pytest.raises(hx.ReloadError):
        kernel.reload(new)
    assert kernel.state("db") == hx.PluginState.FAILED
    assert kernel.state("app") == hx.PluginState.STOPPED
    with pytest.raises(hx.PluginNotFoundError):
        kernel.get("db")
    with pytest.raises(hx.PluginNotFoundError):
        kernel.get("app")


def test_redefining_an_unchanged_plugin_with_a_pydantic_config_reloads_nothing(kernel):
    from pydantic import BaseModel, Field

    def cell(default: int = 3) -> list[type[hx.Plugin]]:  # what re-running a cell makes
        class Settings(BaseModel):
            size: int = default
            tags: list[str] = Field(default_factory=list)

        class Sized(hx.Plugin):
            name = "sized"
            config_model = Settings

            def init(self, ctx, config):
                self.size = config.size

        return [Sized]

    kernel.define(cell(), source="cell 1", unit="cell-1")
    first = kernel.get("sized")
    report = kernel.define(cell(), source="cell 1", unit="cell-1")
    assert report.order == [] and kernel.get("sized") is first  # unchanged code: left alone
    report = kernel.define(cell(default=4), source="cell 1", unit="cell-1")
    assert report.order == ["sized"] and kernel.get("sized").size == 4


def test_a_phase_assigned_to_a_class_after_its_load_runs_in_the_next_reload(kernel):
    class Store(hx.Plugin):
        name = "store"

    kernel.register(Store)
    kernel.load_all()

    def start(self, ctx):
        raise RuntimeError("disk full")

    Store.start = start  # what a notebook cell may do
    with pytest.raises(ReloadError, match="disk full"):
        kernel.reload("store")
    assert kernel.state("store") == hx.PluginState.ACTIVE
