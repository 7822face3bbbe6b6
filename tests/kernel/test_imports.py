"""Importing plugin code (helixlab/kernel/_workers.py), through ``Kernel.aimport_unit`` and
``Kernel.areimport_module``: on the kernel's worker threads, under a timeout, one stuck
import of the same content at a time, and nothing else kept waiting."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import helixlab as hx
from helixlab.errors import PluginTimeoutError

GATE = "_hx_test_imports_gate"
HANGS = f"import sys\nsys.modules[{GATE!r}].wait()  # released at the test's end\n"


def plugin_file(name: str, version: str = "1.0.0", top: str = "") -> str:
    body = f"class P(hx.Plugin):\n    name = {name!r}\n    version = {version!r}\n"
    return f"{top}import helixlab as hx\n\n\n{body}"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """What a hanging file waits on: set at the end, so no import outlives the test."""
    event = threading.Event()
    module = types.ModuleType(GATE)
    module.wait = event.wait  # type: ignore[attr-defined]
    sys.modules[GATE] = module
    yield event
    event.set()
    sys.modules.pop(GATE, None)


def import_unit(kernel: hx.Kernel, path: Path, timeout: float) -> list[type[hx.Plugin]]:
    classes, _ = kernel.run(kernel.aimport_unit(path, path, timeout=timeout))
    return classes


def test_a_file_imports_on_a_worker_thread_and_gives_its_plugin_classes(kernel, tmp_path):
    path = tmp_path / "fine.py"
    path.write_text(plugin_file("fine"))
    classes, prints = kernel.run(kernel.aimport_unit(path, path))
    assert [c.name for c in classes] == ["fine"] and set(prints) == {"fine"}


def test_a_file_hanging_at_import_times_out_then_is_refused_at_once_until_it_changes(
    kernel, tmp_path, gate
):
    path = tmp_path / "stuck.py"
    path.write_text(plugin_file("stuck", top=HANGS))
    began = time.monotonic()
    with pytest.raises(PluginTimeoutError) as first:
        import_unit(kernel, path, timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 5
    assert (first.value.plugin, first.value.phase) == ("stuck", "import")
    assert "did not finish importing within 0.3s" in str(first.value)
    began = time.monotonic()
    with pytest.raises(PluginTimeoutError) as again:  # the same content: no new thread
        import_unit(kernel, path, timeout=30)
    assert time.monotonic() - began < 5  # refused at once, not at its 30 s timeout
    assert "still importing" in str(again.value) and again.value.phase == "import"
    path.write_text(plugin_file("stuck", version="2.0.0"))  # mended: imported again
    assert [c.version for c in import_unit(kernel, path, timeout=5)] == ["2.0.0"]


def test_hung_imports_keep_nothing_else_waiting(kernel, tmp_path, gate):
    for i in range(6):  # more than the loop's default executor has threads on a small box
        path = tmp_path / f"stuck{i}.py"
        path.write_text(plugin_file(f"stuck{i}", top=HANGS))
        with pytest.raises(PluginTimeoutError):
            import_unit(kernel, path, timeout=0.1)
    began = time.monotonic()
    kernel.apply_config("plugins:\n  rate-limiter: {}\n")
    assert kernel.load_all().ok
    fine = tmp_path / "fine.py"
    fine.write_text(plugin_file("fine"))
    assert [c.name for c in import_unit(kernel, fine, timeout=5)] == ["fine"]
    assert time.monotonic() - began < 5


def test_a_module_reimport_is_bounded_the_same_way(kernel, gate):
    with pytest.raises(PluginTimeoutError) as first:
        kernel.run(kernel.areimport_module("mod", "some.module", gate.wait, timeout=0.2))
    assert "some.module did not finish importing within 0.2s" in str(first.value)
    with pytest.raises(PluginTimeoutError, match="still importing"):
        kernel.run(kernel.areimport_module("mod", "some.module", gate.wait, timeout=0.2))
    assert kernel.run(kernel.areimport_module("other", "other.module", lambda: 42)) == 42


def test_what_an_import_raises_reaches_the_caller(kernel):
    def broken() -> None:
        raise SyntaxError("invalid syntax (mod.py, line 3)")

    with pytest.raises(SyntaxError, match="line 3"):
        kernel.run(kernel.areimport_module("mod", "mod", broken))
