"""A configuration cannot stall the kernel: ``<<`` merge keys count against the same expansion
budget as aliases (a small YAML that expands hugely is refused at once, with a clear error),
and configurations are read and parsed off the kernel's loop, so the gateway keeps answering
while one is applied."""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

import helixlab as hx
from helixlab.errors import ConfigError
from helixlab.kernel._config import parse_config

from _gateway_support import provider_plugin


def merge_bomb(levels: int, width: int = 8) -> str:
    """Each level merges the previous one ``width`` times: small text, 8**levels merged keys."""
    lines = [
        "plugins:",
        "  p:",
        "    config:",
        "      l0: &l0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}",
    ]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"      l{i}: &l{i} {{<<: [{refs}]}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 12])
def test_a_small_merge_key_bomb_is_refused_quickly(levels: int) -> None:
    text = merge_bomb(levels)
    assert len(text) < 900
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    # expanded, 8**12 keys would take hours; refused by the budget, well under a second on an
    # idle machine (the bound is loose so that a loaded CI worker cannot fail it)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "expands to more than 100000 values" in message and "'<<' merge keys" in message
    assert info.value.problems[0].line is not None


def test_ordinary_merges_still_work_and_count_little() -> None:
    doc = parse_config(merge_bomb(3))  # 512 merged keys: well within the budget
    assert doc.plugins["p"].config["l3"] == {k: i for i, k in enumerate("abcdefgh", 1)}


@pytest.mark.parametrize("how", ["apply_config", "prepare"])
def test_a_config_is_read_and_parsed_off_the_kernels_loop(kernel, tmp_path, how) -> None:
    kernel.register(provider_plugin())
    kernel.load_all()
    server = kernel.serve()
    fifo = tmp_path / "slow.yaml"  # a file that arrives slowly (a network share, a pipe)
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            if how == "apply_config":
                kernel.apply_config(fifo)
            else:
                kernel.prepare(hx.Change.apply_config(fifo)).commit()
        except BaseException as exc:
            errors.append(exc)

    applying = threading.Thread(target=apply)
    applying.start()
    with open(fifo, "w") as writer:  # returns once the kernel has opened it for reading
        started = time.monotonic()
        models = httpx.get(server.url + "/v1/models", timeout=5)
        assert models.status_code == 200 and time.monotonic() - started < 2
        health = httpx.get(server.url + "/health", timeout=5)
        assert health.status_code == 200
        writer.write("plugins:\n  rate-limiter:\n    config: {burst_size: 7}\n")
    applying.join(10)
    assert not errors and kernel.entry("rate-limiter").config.burst_size == 7
    assert kernel.state("rate-limiter") == hx.PluginState.REGISTERED
