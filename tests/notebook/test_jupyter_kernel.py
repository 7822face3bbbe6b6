"""What a learner sees in a real Jupyter kernel (ipykernel over jupyter_client): a re-run
plugin cell names what changed, and Kernel › Interrupt during a slow start rolls back at
once, in one line."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _waiting import wait_until

jupyter_client = pytest.importorskip("jupyter_client.manager")


@pytest.fixture
def jupyter(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    km, kc = jupyter_client.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def outputs(kc: Any, msg_id: str, timeout: float = 60) -> tuple[str, list[str]]:
    """The reply's status and what the cell showed (stream text, results, error lines)."""
    shown: list[str] = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            shown.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            shown.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            shown.append("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    return reply["content"]["status"], [re.sub(r"\x1b\[[0-9;]*m", "", s) for s in shown]


def cell(kc: Any, code: str) -> tuple[str, list[str]]:
    return outputs(kc, kc.execute(textwrap.dedent(code)))


PLUGIN = """\
%%helix plugin
import helixlab as hx
import pathlib
import time


class TokenBucket:
    def take(self):
        return {take}


class Limiter(hx.Plugin):
    name = "lab-rate-limiter"
    version = "{version}"

    def start(self, ctx):
        self.bucket = TokenBucket()
        if self.version == "2.0":
            pathlib.Path("started").touch()
            time.sleep(8)
"""


def test_a_learner_sees_what_changed_and_an_interrupt_in_one_line(jupyter, tmp_path):
    km, kc = jupyter
    assert cell(kc, "%load_ext helixlab")[0] == "ok"
    assert cell(kc, "helix.timeouts = type(helix.timeouts)(start=60)")[0] == "ok"
    status, shown = cell(kc, PLUGIN.format(take=1, version="1.0"))
    assert status == "ok", shown

    # item 1: only the helper class changed; the report names it
    status, shown = cell(kc, PLUGIN.format(take=2, version="1.0"))
    assert status == "ok", shown
    assert "".join(shown).splitlines()[:2] == [
        "TokenBucket changed: reloading lab-rate-limiter",
        "reloaded lab-rate-limiter: 1 plugin(s), dependencies first",
    ]
    assert cell(kc, "helix.get('lab-rate-limiter').bucket.take()")[1] == ["2"]

    # item 5: Kernel › Interrupt while the new version's start() takes 8 s
    msg_id = kc.execute(PLUGIN.format(take=3, version="2.0"))
    wait_until((tmp_path / "started").exists, 60, "the slow start began")
    pressed = time.monotonic()
    km.interrupt_kernel()
    _, shown = outputs(kc, msg_id)  # (ipykernel 7 answers an interrupted cell "ok")
    took = time.monotonic() - pressed
    lines = [line for line in "\n".join(shown).splitlines() if line.strip()]
    assert lines == [
        "ReloadInterrupted: Reload of lab-rate-limiter interrupted: rolled back, the old "
        "versions keep serving."
    ]
    assert took < 2.0, f"the interrupt took {took:.2f}s"  # rolled back, not 8 s later
    status, shown = cell(
        kc, "helix.get('lab-rate-limiter').version, helix.state('lab-rate-limiter')"
    )
    assert shown == ["('1.0', <PluginState.ACTIVE: 'active'>)"], shown
