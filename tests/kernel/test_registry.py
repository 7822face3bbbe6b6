"""Tests for helixlab.kernel._registry: plugins whose config has required settings, and
configuration that arrives before its plugin (the course's notebook order)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import helixlab as hx
from helixlab.errors import ConfigError


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
