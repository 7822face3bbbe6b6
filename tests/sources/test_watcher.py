"""Tests for helixlab.sources' FileWatcher: hot reload of a plugins directory on save.

Each test waits on the watcher's batch counter (or the kernel's events), never on a sleep.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from pathlib import Path

import pytest

import helixlab as hx
from helixlab.errors import HelixError

from _files import change, save


def source(name: str, version: str = "1.0.0", deps: tuple[str, ...] = (), body: str = "") -> str:
    return (
        f"import helixlab as hx\n\nclass P(hx.Plugin):\n    name = {name!r}\n"
        f"    version = {version!r}\n    dependencies = {deps!r}\n{body}"
    )


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    save(root / "logger.py", source("custom-logger"))
    save(root / "limiter.py", source("rate-limiter", deps=("custom-logger",)))
    save(root / "other.py", source("other"))
    save(
        root / "pkg" / "plugin.py",
        source("pkg", body="    from .settings import RATE as rate\n").replace(
            "import helixlab as hx\n", "import helixlab as hx\nfrom . import settings\n"
        ),
    )
    save(root / "pkg" / "settings.py", "RATE = 1\n")
    return root


@pytest.fixture
def watcher(kernel, plugins):
    kernel.discover(plugins)
    kernel.load_all()
    w = kernel.watch_files(plugins, debounce=400, step=20)
    yield w
    w.stop()


def test_an_edit_reloads_the_changed_plugin_and_its_dependents_only(kernel, watcher, plugins):
    old_other = kernel.get("other")
    events = kernel.watch(timeout=10)
    before = watcher.batches
    save(plugins / "logger.py", source("custom-logger", version="2.0.0"))
    reloaded = []
    for event in events:
        if event.kind == "reloaded":
            reloaded.append(event.plugin)
        if event.plugin == "rate-limiter" and event.kind == "reloaded":
            break
    events.close()
    assert reloaded == ["custom-logger", "rate-limiter"]
    assert kernel.get("custom-logger").version == "2.0.0"
    assert kernel.get("other") is old_other
    assert [kernel.reload_count(n) for n in ("custom-logger", "rate-limiter", "other")] == [1, 1, 0]
    assert watcher.wait_for_batch(before)  # the report is kept once the reload returns
    assert watcher.reports[-1].order == ["custom-logger", "rate-limiter"]


def test_saving_unchanged_content_reloads_nothing(kernel, watcher, plugins):
    change(watcher, plugins / "other.py", source("other"))
    assert kernel.reload_count("other") == 0
    assert watcher.errors == []


def test_an_edit_of_a_sibling_module_reloads_the_package_plugin(kernel, watcher, plugins):
    assert kernel.get("pkg").rate == 1
    change(watcher, plugins / "pkg" / "settings.py", "RATE = 2\n")
    assert kernel.get("pkg").rate == 2
    assert kernel.reload_count("pkg") == 1 and kernel.reload_count("other") == 0


def test_a_syntax_error_keeps_the_old_version_and_is_reported_once(kernel, watcher, plugins):
    old = kernel.get("other")
    broken = source("other", version="2.0.0") + "    def start(self, ctx:\n"
    change(watcher, plugins / "other.py", broken)
    change(watcher, plugins / "other.py", broken)  # saved again, same content

    assert kernel.get("other") is old and kernel.state("other") == hx.PluginState.ACTIVE
    errors = [e for e in kernel.events() if e.kind == "file_error"]
    assert len(errors) == 1 and len(watcher.errors) == 1
    assert errors[0].detail == "other.py: the running version keeps serving"
    assert "SyntaxError" in errors[0].error and "other.py:7" in errors[0].error

    change(watcher, plugins / "other.py", source("other", version="2.0.0"))
    assert kernel.get("other").version == "2.0.0"
    # the same mistake made again is a new error, reported again
    change(watcher, plugins / "other.py", broken)
    assert len([e for e in kernel.events() if e.kind == "file_error"]) == 2


def test_renaming_a_plugin_in_its_file_is_refused(kernel, watcher, plugins):
    old = kernel.get("other")
    change(watcher, plugins / "other.py", source("renamed"))
    (error,) = [e for e in kernel.events() if e.kind == "file_error"]
    assert "no longer defines 'other'" in error.error
    assert "renamed" not in kernel and kernel.get("other") is old


def test_a_new_file_registers_and_loads_its_plugin(kernel, watcher, plugins):
    change(watcher, plugins / "audit.py", source("audit", deps=("custom-logger",)))
    assert kernel.state("audit") == hx.PluginState.ACTIVE
    assert watcher.reports[-1].loaded == ["audit"]


def test_stop_ends_the_watch_and_closing_the_kernel_stops_it_too(kernel, plugins):
    first = kernel.watch_files(plugins, debounce=400, step=20)
    first.stop()
    first.stop()  # idempotent
    assert not first.running and "stopped" in repr(first)
    second = kernel.watch_files(plugins, debounce=400, step=20)
    assert second.running
    kernel.close()
    assert not second.running


def test_stop_from_the_kernel_loop_and_after_close_leaves_no_coroutine_unawaited(kernel, tmp_path):
    (root := tmp_path / "empty").mkdir()
    watcher = kernel.watch_files(root, debounce=400, step=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        async def on_the_loop() -> None:
            watcher.stop()  # cannot wait for itself: asks the watch to end
            await asyncio.wait_for(asyncio.shield(watcher._task), 10)

        kernel.run(on_the_loop())
        assert not watcher.running
        kernel.close()
        watcher.stop()  # after close: nothing to do
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_watching_something_that_is_not_a_directory_is_refused(kernel, tmp_path):
    with pytest.raises(HelixError, match="not a directory"):
        kernel.watch_files(tmp_path / "nowhere")


def test_a_file_that_hangs_at_import_is_reported_once_and_blocks_nothing(kernel, plugins):
    kernel.discover(plugins)
    kernel.load_all()
    watcher = kernel.watch_files(plugins, debounce=400, step=20, import_timeout=0.3)
    hung = "import threading\n_RELEASE = threading.Event()\n_RELEASE.wait()\n" + source(
        "other", version="9.0.0"
    )
    try:
        change(watcher, plugins / "other.py", hung)
        errors = [e for e in kernel.events("other") if e.kind == "file_error"]
        assert len(errors) == 1 and "did not finish importing within 0.3s" in errors[0].error
        assert kernel.get("other").version == "1.0.0"  # the old version keeps serving
        change(watcher, plugins / "logger.py", source("custom-logger", version="2.0.0"))
        assert kernel.get("custom-logger").version == "2.0.0"  # other files are still served
        change(watcher, plugins / "other.py", hung)  # the same content, saved again
        assert len([e for e in kernel.events("other") if e.kind == "file_error"]) == 1
    finally:
        watcher.stop()  # returns: nothing waits for the hung import
    assert not watcher.running


TWO = """\
import helixlab as hx


class Bucket:
    def take(self):
        return {take}


class Limiter(hx.Plugin):
    name = "file-limiter"

    def init(self, ctx, config):
        self.bucket = Bucket()


class Echo(hx.Plugin):
    name = "file-echo"
    version = "{echo}"
"""


def test_a_file_reloads_only_the_plugins_whose_reachable_code_changed(kernel, tmp_path):
    root = tmp_path / "two"
    save(root / "two.py", TWO.format(take=1, echo="1.0"))
    kernel.discover(root)
    kernel.load_all()
    watcher = kernel.watch_files(root, debounce=400, step=20)
    try:
        change(watcher, root / "two.py", TWO.format(take=2, echo="1.0"))
        assert kernel.get("file-limiter").bucket.take() == 2
        assert [kernel.reload_count(n) for n in ("file-limiter", "file-echo")] == [1, 0]
        assert str(watcher.reports[-1]).startswith("Bucket changed: reloading file-limiter\n")
        comment = "# a comment\n" + TWO.format(take=2, echo="1.0").replace("\n\n", "\n\n\n")
        change(watcher, root / "two.py", comment)
        assert [kernel.reload_count(n) for n in ("file-limiter", "file-echo")] == [1, 0]
    finally:
        watcher.stop()
