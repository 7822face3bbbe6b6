"""A kernel Change as a fleet ships it (helixlab.fleet._wire): JSON there and back, and
what Redis gives back checked key by key (no Redis needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helixlab import Change
from helixlab.fleet._wire import change_from_wire, change_to_wire

from _files import hello_plugin

names = st.text(st.characters(categories=("L", "N"), include_characters="-_"), min_size=1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
relative_paths = st.lists(names.filter(lambda n: n not in (".", "..")), min_size=1, max_size=3)


def travelling_changes(directory: str) -> st.SearchStrategy[Change]:
    return st.one_of(
        st.builds(
            lambda ts, c: Change.reload(*ts, cascade=c),
            st.lists(names, min_size=1, max_size=4),
            st.booleans(),
        ),
        st.builds(Change.configure, names, st.dictionaries(st.text(), json_values, max_size=4)),
        st.builds(
            lambda doc, src, off: Change.apply_config(doc, source=src, line_offset=off),
            st.text() | st.dictionaries(st.text(), json_values, max_size=3),
            st.none() | st.text(),
            st.integers(min_value=0, max_value=10_000),
        ),
        st.builds(
            lambda parts, src: Change.define_file(
                directory, str(Path(directory, *parts)), source=src
            ),
            relative_paths,
            st.text(),
        ),
    )


@settings(max_examples=300)
@given(st.data())
def test_every_change_that_travels_comes_back_equal_through_json(data):
    change = data.draw(travelling_changes("/srv/plugins"))
    wire = json.loads(json.dumps(change_to_wire(change)))
    assert change_from_wire(wire, directory="/srv/plugins") == change


keys = st.sampled_from(["kind", "targets", "path", "x"])


@settings(max_examples=500)
@given(json_values | st.dictionaries(keys, json_values))
def test_garbage_from_redis_is_a_clear_value_error_never_anything_else(garbage):
    try:
        change = change_from_wire(garbage, directory="/srv/plugins")
    except ValueError as exc:
        assert str(exc).startswith(("A ", "An ", "Unknown change kind", "'"))
    else:  # what it accepts is a change it could have written
        assert change_from_wire(change_to_wire(change), directory="/srv/plugins") == change


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("reload a", "must be a JSON object"),
        ({"kind": "rm -rf"}, "Unknown change kind 'rm -rf'"),
        ({"kind": "reload", "targets": ["a"], "exec": "x"}, r"unknown key\(s\) \['exec'\]"),
        ({"kind": "reload"}, r"missing key\(s\) \['targets'\]"),
        ({"kind": "reload", "targets": [1]}, "'targets' must be a list of plugin names"),
        ({"kind": "reload", "targets": ["a"], "cascade": 1}, "'cascade' must be true or false"),
        ({"kind": "configure", "plugin": "a", "values": [1]}, "'values' must be a JSON object"),
        ({"kind": "apply_config", "document": "", "line_offset": True}, "'line_offset'"),
        ({"kind": "define_file", "path": "../../etc/x.py"}, "relative path inside"),
        ({"kind": "define_file", "path": "/etc/x.py"}, "relative path inside"),
    ],
)
def test_a_malformed_change_is_refused_naming_what_is_wrong(wire, message):
    with pytest.raises(ValueError, match=message):
        change_from_wire(wire, directory="/srv/plugins")


def test_in_memory_forms_do_not_travel(make_plugin):
    with pytest.raises(ValueError, match="send plugin names"):
        change_to_wire(Change.reload(make_plugin("a")))
    with pytest.raises(ValueError, match="send define_file"):
        change_to_wire(Change.define([make_plugin("a")], source="cell"))
    with pytest.raises(ValueError, match="path cannot travel"):
        change_to_wire(Change.apply_config(Path("plugins.yaml")))
    with pytest.raises(ValueError, match="JSON cannot carry"):
        change_to_wire(Change.configure("a", {"when": object()}))


def test_a_config_document_that_cannot_travel_is_named_as_the_document():
    with pytest.raises(ValueError, match=r"'document\.plugins\.up\.timeout' holds a object"):
        change_to_wire(Change.apply_config({"plugins": {"up": {"timeout": object()}}}))


def test_a_define_file_change_travels_as_its_path_in_the_plugins_directory(kernel, tmp_path):
    plugin = hello_plugin(tmp_path)
    wire = change_to_wire(Change.define_file(tmp_path, plugin))
    assert wire == {"kind": "define_file", "path": "hello.py", "source": None}
    report = kernel.apply(change_from_wire(wire, directory=tmp_path))
    assert report.loaded == ["hello"] and kernel.entry("hello").source == str(plugin)
    plugin.write_text(plugin.read_text().replace("1.0.0", "2.0.0"))
    prepared = kernel.prepare(change_from_wire(wire, directory=tmp_path))
    assert prepared.order == ["hello"] and prepared.commit().ok
    assert kernel.get("hello").version == "2.0.0"
