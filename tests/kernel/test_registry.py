"""Tests for helixlab.kernel._registry: plugins whose config has required settings, and
configuration that arrives before its plugin (the course's notebook order)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

import helixlab as hx
from helixlab.errors import ConfigError
from helixlab.kernel import DependencyGraph
from helixlab.kernel._registry import Registry


class NeedsKey(BaseModel):
    api_key: str
    retries: int = 3


def needs_key(make_plugin, **attrs):
    return make_plugin("keyed", config_model=NeedsKey, **attrs)


def test_a_plugin_with_a_required_setting_registers(kernel, make_plugin):
    assert kernel.register(needs_key(make_plugin)) == "keyed"
    assert kernel.state("keyed") == hx.PluginState.REGISTERED


def test_loading_it_without_the_setting_names_plugin_key_and_where_to_put_it(kernel, make_plugin):
    kernel.register(needs_key(make_plugin))
    kernel.register(make_plugin("user", deps=("keyed",)))
    report = kernel.load_all()
    error = report.failed["keyed"]
    assert error.phase == "config"
    text = str(error)
    assert "'keyed'" in text and "'api_key'" in text and "`plugins: keyed: config:`" in text
    assert report.skipped == {"user": "needs 'keyed', which failed"}
    kernel.configure("keyed", {"api_key": "k-1"})
    assert kernel.load_all().order == ["keyed", "user"]
    assert kernel.get("keyed").version == "1.0.0"


def test_applying_a_config_without_the_setting_is_refused_at_once(kernel, make_plugin):
    kernel.register(needs_key(make_plugin))
    with pytest.raises(ConfigError, match="'api_key' is missing"):
        kernel.apply_config("plugins:\n  keyed:\n    config: {retries: 1}\n")


def test_config_applied_before_the_class_is_kept_for_it(kernel, make_plugin):
    kernel.apply_config("plugins:\n  keyed:\n    config: {api_key: k-2, retries: 5}\n")
    kernel.register(needs_key(make_plugin))
    assert kernel.entry("keyed").config == NeedsKey(api_key="k-2", retries=5)
    assert kernel.load_all().order == ["keyed"]


def test_config_applied_before_a_cell_defines_the_plugin_is_used_by_it(kernel, make_plugin):
    kernel.apply_config("plugins:\n  keyed:\n    priority: 4\n    config: {api_key: k-3}\n")
    report = kernel.define([needs_key(make_plugin)], source="cell 2", unit="cell-2")
    assert report.loaded == ["keyed"] and kernel.entry("keyed").priority == 4


def test_a_kept_config_that_the_class_refuses_is_an_error_at_its_line(kernel, make_plugin):
    kernel.apply_config(
        "plugins:\n  keyed:\n    config:\n      api_key: k\n      retries: many\n",
        source="plugins.yaml",
    )
    with pytest.raises(ConfigError, match=r"plugins\.yaml:5: keyed: config\.retries"):
        kernel.register(needs_key(make_plugin))
    assert "keyed" not in kernel


def test_registries_derived_from_one_share_no_contents():
    from helixlab.kernel._registry import Registry

    def plugin(name):
        return type("P", (hx.Plugin,), {"name": name})

    base = Registry().added(plugin("a"))
    left = base.added(plugin("b"))
    right = base.added(plugin("c"))
    assert list(base) == ["a"] and list(left) == ["a", "b"] and list(right) == ["a", "c"]
    assert "b" not in base and "b" not in right and "c" not in left
    assert list(left.without("a")) == ["b"] and list(left) == ["a", "b"]


def test_a_registry_is_made_of_entries_only_with_what_they_hold():
    """Registry.of finds the entries' secrets and guards; Registry(entries) would miss them."""
    from helixlab.kernel._config import parse_config
    from helixlab.kernel._registry import Registry

    keyed = type("K", (hx.Plugin,), {"name": "k", "config_model": dict, "required": True})
    spec = parse_config("plugins:\n  k:\n    config: {api_key: sk-secret-1}\n").plugins["k"]
    registry = Registry().added(keyed, spec=spec)
    assert "sk-secret-1" in registry.secrets and registry.guards == ("k",)
    assert Registry.of(dict(registry.entries)).secrets == registry.secrets
    with pytest.raises(TypeError, match=r"Registry\.of"):
        Registry(dict(registry.entries))


NAMES = [f"p{i}" for i in range(6)]
#: one change of one plugin's entry: (plugin, priority, enabled, depends_on, a config value)
CHANGE = st.tuples(
    st.sampled_from(NAMES),
    st.integers(-1, 1),
    st.booleans(),
    st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
    st.integers(0, 3),
)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except hx.HelixError as exc:  # a cycle, a disabled target: the same refusal
        return type(exc).__name__, str(exc)


@given(st.lists(CHANGE, min_size=1, max_size=25))
def test_the_graph_kept_across_changes_orders_as_a_new_one(changes):
    """The registry keeps its graph's orders across a change that leaves what they read
    alone (a config value); after any sequence of changes they are a new graph's orders."""
    registry = Registry()
    for name in NAMES:
        registry = registry.added(type(name, (hx.Plugin,), {"name": name, "config_model": dict}))
    for name, priority, enabled, depends_on, value in changes:
        spec = registry[name].spec
        spec = replace(
            spec,
            priority=priority,
            enabled=enabled,
            depends_on=tuple(depends_on),
            config={"v": value},
        )
        registry = registry.with_spec(spec)
        kept, new = registry.graph(), DependencyGraph(registry.entries)
        assert kept.display_order() == new.display_order()
        assert _outcome(kept.load_order) == _outcome(new.load_order)
        assert kept.find_cycle() == new.find_cycle()
        for target in NAMES:
            assert _outcome(kept.reload_order, target) == _outcome(new.reload_order, target)
