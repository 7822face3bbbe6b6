"""Issue 20, item 5: an admin reload of a plugin file that hangs at import answers.

The admin API imports through the kernel's import path (the file watcher's): a worker
thread of the kernel's own, ``import_timeout``, and a file still stuck in its last import
refused at once rather than imported on yet another thread. So ten retries each answer
within the timeout (plus a margin), one thread is stuck in all, and re-applying the
configuration (what SIGHUP does) still works afterwards. A real gateway on loopback."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import httpx

import helixlab as hx
from helixlab.gateway._operations import Operations

from _serving import stamp_plugin, write

KEY = "admin-key-for-tests-0123"
IMPORT_TIMEOUT = 1.0
MARGIN = 4.0  # a loaded machine: the answer comes at the timeout, give or take scheduling

HANGING = """
import sys
sys.modules["_hx_import_gate"].wait()  # the test releases it at its end
"""


def test_an_admin_reload_of_a_file_hanging_at_import_answers_every_time(tmp_path: Path):
    gate = threading.Event()
    gate_module = type(sys)("_hx_import_gate")
    gate_module.wait = gate.wait  # type: ignore[attr-defined]
    sys.modules["_hx_import_gate"] = gate_module
    plugins = tmp_path / "plugins"
    write(plugins / "header_stamp.py", stamp_plugin("v1"))
    config = tmp_path / "plugins.yaml"
    write(config, "plugins:\n  fake: {}\n  header-stamp: {}\n")
    kernel = hx.Kernel()
    try:
        from _gateway_support import provider_plugin

        kernel.register(provider_plugin("fake"))
        kernel.discover(plugins)
        kernel.apply_config(config)
        assert kernel.load_all().ok
        operations = Operations(kernel, str(config), [str(plugins)], import_timeout=IMPORT_TIMEOUT)
        server = kernel.serve(admin_key=KEY, operations=operations)
        admin = {"Authorization": f"Bearer {KEY}"}
        # the file now hangs at import
        write(plugins / "header_stamp.py", stamp_plugin("v2") + HANGING)
        threads_before = threading.active_count()
        took = []
        for attempt in range(10):
            started = time.monotonic()
            answer = httpx.post(
                server.url + "/admin/reload",
                json={"plugin": "header-stamp"},
                headers=admin,
                timeout=IMPORT_TIMEOUT + MARGIN + 10,
            )
            took.append(time.monotonic() - started)
            assert answer.status_code == 409, answer.text
            body = answer.json()
            assert (body["plugin"], body["phase"]) == ("header-stamp", "import")
            wanted = "did not finish importing within 1s" if attempt == 0 else "still importing"
            assert wanted in body["text"], body["text"]
            assert "the old versions keep serving" in body["text"]
        assert max(took) < IMPORT_TIMEOUT + MARGIN, took
        assert threading.active_count() <= threads_before + 1  # one thread stuck, not ten
        # v1 still serves
        response = httpx.get(server.url + "/v1/models")
        assert response.status_code == 200 and response.headers["x-stamp"] == "v1"
        # what SIGHUP runs, and apply_config, still work
        write(config, "plugins:\n  fake: {}\n  header-stamp: {priority: 3}\n")
        outcome = asyncio.run(operations.reapply())
        assert outcome.ok, outcome.text
        assert kernel.entry("header-stamp").priority == 3
        kernel.apply_config({"plugins": {"header-stamp": {"priority": 4}}})
        assert kernel.entry("header-stamp").priority == 4
        # the file mended: the reload goes through
        write(plugins / "header_stamp.py", stamp_plugin("v3", version="3.0.0"))
        answer = httpx.post(
            server.url + "/admin/reload", json={"plugin": "header-stamp"}, headers=admin
        )
        assert answer.status_code == 200, answer.text
        assert httpx.get(server.url + "/v1/models").headers["x-stamp"] == "v3"
    finally:
        gate.set()
        kernel.close()
        sys.modules.pop("_hx_import_gate", None)
