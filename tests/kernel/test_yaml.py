"""Reading a hand-written configuration (helixlab/kernel/_yaml.py), through ``parse_config``:
every mistake at once, each at the line to fix (the cell's line with ``line_offset``);
``${VAR:-default}`` from the environment; and a bounded cost for a hostile document."""

from __future__ import annotations

import time

import pytest

from helixlab.errors import ConfigError
from helixlab.kernel import parse_config


def problems(text: str, **options) -> list[tuple]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, **options)
    return [(p.line, p.plugin, p.path, p.message) for p in caught.value.problems]


def config_of(text: str, plugin: str = "a", **options) -> dict:
    return parse_config(text, **options).plugins[plugin].config


def test_environment_values_defaults_and_a_literal_dollar():
    text = (
        "plugins:\n"
        "  a:\n"
        "    enabled: ${FLAG:-false}\n"
        "    config:\n"
        "      url: ${HOST:-localhost}\n"
        "      n: ${N}\n"
        "      key: $${LITERAL}\n"
        "      quoted: '${FLAG:-false}'\n"
    )
    doc = parse_config(text, env={"N": "3"})
    assert doc.plugins["a"].enabled is False  # a plain `${...}` is typed as written
    assert doc.plugins["a"].config == {
        "url": "localhost", "n": "3", "key": "${LITERAL}", "quoted": "false"
    }  # fmt: skip
    assert config_of(text, env={"N": "3", "HOST": "example.org"})["url"] == "example.org"


def test_every_unset_variable_is_reported_at_once_at_its_line():
    text = "plugins:\n  a:\n    config:\n      x: ${MISSING}\n  b:\n    config:\n      y: ${ALSO}\n"
    found = problems(text, env={})
    assert [(line, plugin, path) for line, plugin, path, _ in found] == [
        (4, "a", "config.x"),
        (7, "b", "config.y"),
    ]
    assert "environment variable 'MISSING' is not set and has no default" in found[0][3]
    assert "${MISSING:-default}" in found[0][3]


def test_a_key_without_its_colon_is_reported_on_its_own_line():
    [(line, _, _, message)] = problems("plugins:\n  a\n    config: {}\n")
    assert line == 2 and "'a' has no ':' after it" in message


def test_an_unclosed_bracket_is_reported_where_it_is():
    [(line, _, _, message)] = problems("plugins:\n  a:\n    config: {x: [1, 2}\n")
    assert line == 3 and message.startswith("invalid YAML at column ")


def test_a_misspelt_key_gets_a_suggestion_and_the_valid_keys():
    [(line, plugin, path, message)] = problems("plugins:\n  a:\n    enabeld: true\n")
    assert (line, plugin, path) == (3, "a", "enabeld")
    assert "did you mean 'enabled'?" in message and "valid keys are: config, " in message


def test_lines_count_from_the_offset_and_the_message_names_the_source():
    with pytest.raises(ConfigError) as caught:
        parse_config("plugins:\n  a:\n    priority: one\n", line_offset=10, source="cell")
    assert str(caught.value) == (
        "Invalid configuration: cell:13: a: priority: 'priority' must be an integer, "
        "not the string 'one'."
    )


def test_merge_keys_and_aliases_are_read_as_yaml_says():
    text = (
        "plugins:\n"
        "  a:\n"
        "    config:\n"
        "      base: &base {timeout: 3, retries: 2}\n"
        "      mine:\n"
        "        <<: *base\n"
        "        retries: 5\n"
    )
    assert config_of(text)["mine"] == {"timeout": 3, "retries": 5}


def test_an_exponential_alias_expansion_is_refused_quickly():
    lines = ["plugins:", "  a:", "    config:", "      l0: &l0 [" + ", ".join(["x"] * 10) + "]"]
    for i in range(1, 8):  # ten to the eighth values, if expanded
        lines.append(f"      l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    began = time.monotonic()
    found = problems("\n".join(lines) + "\n")
    assert time.monotonic() - began < 10
    assert any("expands to more than 100000 values" in message for *_, message in found)


def test_nesting_too_deep_and_unsupported_tags_are_problems_not_crashes():
    deep = "plugins:\n  a:\n    config:\n      x: " + "[" * 150 + "]" * 150 + "\n"
    [(line, _, _, message)] = problems(deep)
    assert line == 4 and "nest this deep" in message
    [(line, _, path, message)] = problems(
        "plugins:\n  a:\n    config:\n      x: !!python/object:os.system 1\n"
    )
    assert (line, path) == (4, "config.x") and "unsupported tag" in message


def test_a_mapping_goes_through_the_same_checks_as_text():
    doc = parse_config({"plugins": {"a": {"config": {"n": "${N:-7}"}}}}, env={})
    assert doc.plugins["a"].config == {"n": "7"}
    found = problems({"plugins": {"a": {"enabeld": True}}})
    assert [(plugin, path) for _, plugin, path, _ in found] == [("a", "enabeld")]


def test_plugin_names_and_top_keys_are_read_as_written():
    doc = parse_config("plugins:\n  on:\n  null:\n  '1':\n")
    assert list(doc.plugins) == ["on", "null", "1"]  # not True, None and 1
    [(_, _, path, message)] = problems("plugins: {}\ntrue: 1\n")
    assert path == "true" and message.startswith("unknown key 'true'")
    found = problems({"plugins": {123: {"config": {"x": "${UNSET}"}}}}, env={})
    assert [(plugin, path) for _, plugin, path, _ in found] == [
        (None, "plugins.123.config.x"),
        (None, "plugins.123"),
    ]


def test_a_secret_mark_outside_a_config_is_refused_without_its_value():
    text = (
        "plugins:\n"
        "  a:\n"
        "    enabled: {value: s3cret-one, secret: true}\n"
        "plugin_dirs: {value: s3cret-two, secret: true}\n"
    )
    found = problems(text)
    assert [(line, path) for line, _, path, _ in found] == [(3, "enabled"), (4, "plugin_dirs")]
    assert all("s3cret" not in message and "not a mapping" in message for *_, message in found)


def test_plugin_dirs_in_text_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = parse_config("plugin_dirs: [./mine/plugins]\nplugins: {}\n", source="cell [1]")
    assert doc.plugin_dirs == [str(tmp_path / "mine" / "plugins")]
