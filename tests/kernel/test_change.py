"""Tests for helixlab.kernel._change: one Change type, made by Kernel.apply/prepare (its wire
form, what a fleet ships: tests/fleet/test_wire.py)."""

from __future__ import annotations

import pytest

import helixlab as hx
from helixlab import Change

from _files import hello_plugin


def test_a_changes_repr_shows_no_configured_value():
    assert repr(Change.configure("p", {"api_key": "sk-secret-value"})) == (
        "<Change configure: p: api_key>"
    )


def test_apply_and_prepare_make_every_kind_of_change(kernel, make_plugin):
    kernel.register(make_plugin("a", config_model=dict))
    kernel.register(make_plugin("b", deps=("a",)))
    kernel.load_all()
    assert kernel.apply(Change.reload("a")).order == ["a", "b"]
    assert kernel.apply(Change.configure("a", {"level": 2})).order == ["a", "b"]
    assert kernel.entry("a").config == {"level": 2}
    text = "plugins:\n  a:\n    config: {level: 3}\n"
    assert kernel.apply(Change.apply_config(text)).order == ["a", "b"]
    report = kernel.apply(Change.define([make_plugin("c", deps=("a",))], source="cell 1"))
    assert report.loaded == ["c"] and kernel.state("c") == hx.PluginState.ACTIVE
    prepared = kernel.prepare(Change.reload("a", cascade=False))
    assert prepared.order == ["a"]
    assert prepared.commit().ok and kernel.reload_count("a") == 4


def test_a_define_file_change_imports_the_file_itself_under_the_import_timeout(kernel, tmp_path):
    plugin = hello_plugin(tmp_path)
    report = kernel.apply(Change.define_file(tmp_path, plugin))
    assert report.loaded == ["hello"] and kernel.entry("hello").source == str(plugin)
    plugin.write_text(plugin.read_text().replace("1.0.0", "2.0.0"))
    prepared = kernel.prepare(Change.define_file(tmp_path, plugin))
    assert prepared.order == ["hello"] and prepared.commit().ok
    assert kernel.get("hello").version == "2.0.0"
    (tmp_path / "_private.py").write_text("")
    with pytest.raises(hx.ReloadError, match="is not plugin code"):
        kernel.apply(Change.define_file(tmp_path, tmp_path / "_private.py"))
