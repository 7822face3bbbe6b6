"""``helixlab serve CONFIG`` as a user runs it: a subprocess, real signals, real HTTP."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import helixlab

CONFIG = """\
plugins:
  custom-logger:
    config:
      output: stderr
  custom-provider:
    config:
      api_key: sk-never-printed-0123
  request-logger:
    config: {}
gateway:
  max_tool_rounds: 3
"""


def helixlab_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "helixlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_then_stop_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    config = tmp_path / "plugins.yaml"
    config.write_text(CONFIG)
    process = helixlab_cli("serve", str(config), "--port", "0")
    try:
        url = process.stdout.readline().strip()  # printed once the server listens
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        health = httpx.get(url + "/health", timeout=10)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}  # no credentials: the status only
        chat = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert chat.json()["choices"][0]["message"]["content"] == "Echo: hi"
        process.send_signal(sig)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "sk-never-printed" not in err
    assert "loaded 3: custom-logger, custom-provider, request-logger" in err
    stopped = [m.group(1) for m in re.finditer(r"event #\d+ stopped\s+(\S+)", err)]
    assert stopped == ["request-logger", "custom-provider", "custom-logger"]  # dependents first
    assert "Traceback" not in err


def test_a_bad_config_exits_2_with_its_lines(tmp_path: Path) -> None:
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  custom-logger: {}\ngateway:\n  max_tool_round: 3\n")
    process = helixlab_cli("serve", str(config))
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2
    assert f"{config}:4: gateway.max_tool_round: unknown key 'max_tool_round'" in err
    assert "Traceback" not in err and out == ""


def test_an_unknown_plugin_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  no-such-plugin: {}\n")
    process = helixlab_cli("serve", str(config))
    _, err = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "no plugin named 'no-such-plugin'" in err and "Traceback" not in err


def test_version() -> None:
    process = helixlab_cli("--version")
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0 and out.strip() == f"helixlab {helixlab.__version__}"


def test_a_disabled_guard_is_said_on_start_up(tmp_path: Path) -> None:
    """`custom-auth: enabled: false` serves without authentication, as configured: the
    operator reads so on start-up, with the file and line, instead of finding out later."""
    config = tmp_path / "plugins.yaml"
    config.write_text(
        "plugins:\n  custom-provider: {}\n  custom-auth:\n    enabled: false\n"
        "    config:\n      secret: s3cret-never-printed-0123456789abcdef\n"
    )
    process = helixlab_cli("serve", str(config), "--port", "0")
    try:
        url = process.stdout.readline().strip()
        chat = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert chat.status_code == 200  # served as configured: no token needed
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert (
        f"warning: custom-auth guards requests but is disabled ({config}, line 3: "
        "enabled: false): requests are served without it"
    ) in err
    assert "s3cret-never-printed" not in err


LOUD = '''\
import logging

import helixlab as hx


class Loud(hx.Plugin):
    """Logs its whole configuration as it starts, at WARNING (Python's default handler)."""

    name = "loud"
    config_model = dict

    def init(self, ctx, config):
        logging.getLogger("loud").warning("loud started with %s", config)
'''


def test_serve_masks_every_log_line_from_the_first(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "loud.py").write_text(LOUD)
    config = tmp_path / "plugins.yaml"
    config.write_text(
        "plugins:\n  loud:\n    config:\n      api_key: sk-log-never-0123\n  custom-provider: {}\n"
    )
    process = helixlab_cli("serve", str(config), "--port", "0", "--plugins", "plugins",
                           cwd=tmp_path)  # fmt: skip
    try:
        assert process.stdout.readline().startswith("http://")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert "loud started with {'api_key': '***'}" in err, err
    assert "sk-log-never" not in err
