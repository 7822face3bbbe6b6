"""kernel/_reload.py's stored_value_refusal: a new class refused only because of a value
stored for its plugin earlier says so, names the value and where it was set, and the
command that clears it."""

from __future__ import annotations

from typing import Literal

import pytest

import helixlab as hx


class LooseConfig(hx.PluginConfig):
    level: str = "info"


class StrictConfig(hx.PluginConfig):
    level: Literal["debug", "info"] = "info"


class NoDefaultConfig(hx.PluginConfig):
    level: Literal["debug", "info"]


def logger(model: type) -> type[hx.Plugin]:
    return type("Logger", (hx.Plugin,), {"name": "logger", "config_model": model})


@pytest.mark.parametrize("how", ["define", "reload"])
def test_a_stored_value_blocking_a_stricter_model_is_named_with_its_command(kernel, how):
    kernel.register(logger(LooseConfig))
    kernel.load_all()
    kernel.configure("logger", {"level": "verbose"})
    with pytest.raises(hx.ReloadError) as refused:
        if how == "define":
            kernel.define([logger(StrictConfig)], source="cell [3]", origin="cell")
        else:
            kernel.reload(logger(StrictConfig))
    said = str(refused.value)
    assert "the configuration stored for it earlier (level='verbose', set with configure())" in said
    assert "does not fit the new StrictConfig (level: Input should be 'debug' or 'info'" in said
    assert "clear it with helix.configure('logger', {'level': 'info'}) (the new defaults)" in said
    assert said.endswith("The running versions are unchanged.")
    kernel.configure("logger", {"level": "info"})  # what it says, then the new class again
    kernel.reload(logger(StrictConfig))
    assert kernel.entry("logger").config == StrictConfig(level="info")


def test_a_value_from_a_file_is_changed_in_that_file(kernel, tmp_path):
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  logger:\n    config:\n      level: verbose\n")
    kernel.register(logger(LooseConfig))
    kernel.apply_config(config)
    kernel.load_all()
    with pytest.raises(hx.ReloadError) as refused:
        kernel.reload(logger(StrictConfig))
    assert f"set in {config}" in str(refused.value)
    assert f"change it in {config} and apply that file again" in str(refused.value)


def test_a_model_at_fault_itself_gets_the_plain_refusal(kernel):
    kernel.register(logger(LooseConfig))
    kernel.load_all()
    kernel.configure("logger", {"level": "verbose"})
    with pytest.raises(hx.ReloadError) as refused:  # no default to go back to
        kernel.reload(logger(NoDefaultConfig))
    assert "stored for it earlier" not in str(refused.value)
