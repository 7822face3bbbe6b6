"""A plugin's config checked against its model (validate_config, helixlab/kernel/_registry.py),
through ``Kernel.apply_config``: every problem at once at its line, unknown keys refused (nested
ones too) unless the model allows them, secrets never echoed; and ``Duration``."""

from __future__ import annotations

from datetime import timedelta

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import helixlab as hx
from helixlab.errors import ConfigError


class Retry(pydantic.BaseModel):
    attempts: int = 3


class Upstream(hx.PluginConfig):
    url: str
    api_key: str = ""
    timeout: hx.Duration = 30.0
    retry: Retry = Retry()
    routes: dict[str, Retry] = pydantic.Field(default_factory=dict)


def refused(kernel: hx.Kernel, text: str) -> list[tuple]:
    with pytest.raises(ConfigError) as caught:
        kernel.apply_config(text, source="plugins.yaml")
    return [(p.line, p.plugin, p.path, p.message) for p in caught.value.problems]


@pytest.fixture
def upstream(kernel, make_plugin) -> hx.Kernel:
    kernel.register(make_plugin("up", config_model=Upstream))
    return kernel


def test_a_valid_config_reaches_init_as_the_model(upstream):
    upstream.apply_config("plugins:\n  up:\n    config: {url: 'http://x', timeout: 1m30s}\n")
    config = upstream.entry("up").config
    assert isinstance(config, Upstream) and config.timeout == 90.0 and config.retry.attempts == 3


def test_every_problem_is_reported_at_once_at_its_line(upstream):
    found = refused(
        upstream,
        "plugins:\n"
        "  up:\n"
        "    config:\n"
        "      timeout: soon\n"
        "      retry: {atempts: 5}\n"
        "      routes:\n"
        "        chat: {attempts: many}\n",
    )
    assert {(line, plugin, path) for line, plugin, path, _ in found} == {
        (5, "up", "config.retry.atempts"),  # nested unknown keys: the model would drop them
        (2, "up", "config.url"),  # missing: at the plugin's entry
        (4, "up", "config.timeout"),
        (7, "up", "config.routes.chat.attempts"),
    }
    messages = {path: message for _, _, path, message in found}
    assert "did you mean 'attempts'?" in messages["config.retry.atempts"]
    assert "invalid duration 'soon'" in messages["config.timeout"]


def test_a_bad_secret_value_is_not_echoed(upstream):
    found = refused(upstream, "plugins:\n  up:\n    config: {url: x, api_key: [sk-live-123]}\n")
    assert [path for _, _, path, _ in found] == ["config.api_key"]
    assert "sk-live-123" not in found[0][3]


def test_a_plugin_without_a_model_takes_no_keys_and_dict_takes_any(kernel, make_plugin):
    kernel.register(make_plugin("plain", config_model=None))
    kernel.register(make_plugin("loose", config_model=dict))
    [(line, plugin, path, message)] = refused(kernel, "plugins:\n  plain:\n    config: {x: 1}\n")
    assert (line, plugin, path) == (3, "plain", "config.x")
    assert "has no config_model" in message and "config_model = dict" in message
    kernel.apply_config("plugins:\n  loose:\n    config: {anything: [1, 2]}\n")
    assert kernel.entry("loose").config == {"anything": [1, 2]}


def test_a_model_that_allows_extra_keys_gets_them(kernel, make_plugin):
    class Open(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")

    kernel.register(make_plugin("open", config_model=Open))
    kernel.apply_config("plugins:\n  open:\n    config: {free: 1}\n")
    assert kernel.entry("open").config.free == 1


UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@given(st.integers(0, 10_000), st.sampled_from(sorted(UNITS)))
def test_a_duration_with_a_unit_is_that_many_seconds(n, unit):
    assert hx.parse_duration(f"{n}{unit}") == pytest.approx(n * UNITS[unit])
    assert hx.parse_duration(f" {n} {unit} ") == pytest.approx(n * UNITS[unit])


def test_durations_combine_and_plain_numbers_are_seconds():
    assert hx.parse_duration("1m30s") == 90.0 and hx.parse_duration("1h 1ms") == 3600.001
    assert hx.parse_duration(2) == 2.0 and hx.parse_duration("2.5") == 2.5
    assert hx.parse_duration(timedelta(minutes=1)) == 60.0


@pytest.mark.parametrize("bad", ["-1s", -1, "soon", "5 minutes", True, None, "", "1s2"])
def test_a_bad_duration_says_what_would_do(bad):
    with pytest.raises(ValueError, match=r"invalid duration.*'30s', '500ms'"):
        hx.parse_duration(bad)
