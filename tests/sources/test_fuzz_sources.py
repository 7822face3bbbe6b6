"""Bad plugin code, saved to a watched directory or run in a ``%%helix plugin`` cell: import
errors, classes without a name, duplicate names, a dependency added (not running, or not
there at all) or removed between versions, a cycle introduced by a reload — and a
hypothesis fuzz of cell sources. Each bad version is refused with an error naming the
file or cell and the plugin; the old versions keep serving.

Syntax errors, renames and plain exceptions are covered in ``test_watcher.py`` and
``test_cells.py``. Waits are on the watcher's batch counter, never on a sleep.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import helixlab as hx

from _files import change, save
from _ipython import ip_fixture, run  # noqa: F401  (the `ip` fixture)

ACTIVE = hx.PluginState.ACTIVE


def source(name: str | None, version: str = "1.0.0", deps: tuple[str, ...] = (), extra="") -> str:
    """One plugin class (``name=None``: a Plugin subclass without a name)."""
    named = f"    name = {name!r}\n" if name is not None else ""
    return (
        f"import helixlab as hx\n{extra}\n\nclass P(hx.Plugin):\n{named}"
        f"    version = {version!r}\n    dependencies = {deps!r}\n"
    )


def two(name_a: str, name_b: str) -> str:
    return (
        "import helixlab as hx\n\n"
        f"class A(hx.Plugin):\n    name = {name_a!r}\n    version = '9.0.0'\n\n"
        f"class B(hx.Plugin):\n    name = {name_b!r}\n    version = '9.0.1'\n"
    )


def serving(kernel: hx.Kernel) -> dict[str, tuple[int, str]]:
    """Every live instance (identity and version)."""
    out = {}
    for name in kernel.names:
        if kernel.state(name) == ACTIVE:
            plugin = kernel.get(name)
            out[name] = (id(plugin), plugin.version)
    return out


# -- the file watcher -------------------------------------------------------------------------


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    root.mkdir()
    save(root / "logger.py", source("custom-logger"))
    save(root / "limiter.py", source("rate-limiter", deps=("custom-logger",)))
    save(root / "other.py", source("other"))
    save(root / "spare.py", source("spare"))
    return root


@pytest.fixture
def watcher(kernel, plugins):
    kernel.discover(plugins)
    assert kernel.load_all().ok
    kernel.unload("spare")  # registered, not running
    w = kernel.watch_files(plugins, debounce=400, step=20)
    yield w
    w.stop()


#: (file, new content, plugin the error names, what the error says)
BAD_FILES = {
    "import-error": (
        "other.py",
        source("other", "2.0.0", extra="import helixlab_no_such_module"),
        "other",
        "other.py:2: ModuleNotFoundError: No module named 'helixlab_no_such_module'",
    ),
    "error-at-import": (
        "other.py",
        source("other", "2.0.0", extra="SETTINGS = {}['missing']"),
        "other",
        "other.py:2: KeyError: 'missing'",
    ),
    "class-without-name": (
        "other.py",
        source(None, "2.0.0"),
        "other",
        "other.py:4 is a Plugin subclass without a `name`",  # file, line and class
    ),
    "same-name-twice": ("other.py", two("other", "other"), "other", "more than once"),
    "name-of-another-file": (
        "fresh.py",
        source("custom-logger", "9.9.9"),
        "custom-logger",
        "which is already defined in",
    ),
    "added-dep-not-running": (
        "other.py",
        source("other", "2.0.0", deps=("spare",)),
        "other",
        "needs 'spare', which is not running",
    ),
    "added-dep-missing": (
        "other.py",
        source("other", "2.0.0", deps=("ghost",)),
        "other",
        "'ghost'",
    ),
    "added-dep-too-old": (
        "other.py",
        source("other", "2.0.0", deps=("custom-logger>=2",)),
        "other",
        ">=2",
    ),
    "cycle-by-reload": (
        "logger.py",
        source("custom-logger", "2.0.0", deps=("rate-limiter",)),
        "custom-logger",
        "cycle detected: custom-logger -> rate-limiter -> custom-logger",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_refused_naming_file_and_plugin_and_the_old_version_serves(
    kernel, watcher, plugins, case
):
    filename, text, plugin, needle = BAD_FILES[case]
    before = serving(kernel)
    registered = list(kernel.names)
    change(watcher, plugins / filename, text)

    (event,) = [e for e in kernel.events() if e.kind == "file_error"]
    assert event.plugin == plugin
    assert event.detail.startswith(f"{filename}: ")
    assert needle.lower() in event.error.lower(), event.error
    assert len(watcher.errors) == 1 and needle.lower() in str(watcher.errors[0]).lower()
    assert serving(kernel) == before  # the very same instances, the same versions
    assert kernel.names == registered  # nothing new was registered either
    assert watcher.reports == []


def test_a_removed_dependency_reloads_fine(kernel, watcher, plugins):
    logger = kernel.get("custom-logger")
    change(watcher, plugins / "limiter.py", source("rate-limiter", "2.0.0"))
    assert kernel.get("rate-limiter").version == "2.0.0"
    assert kernel.graph.dependencies("rate-limiter") == []
    assert kernel.get("custom-logger") is logger  # the former dependency is left alone
    assert [e for e in kernel.events() if e.kind == "file_error"] == []
    # and now custom-logger may depend on rate-limiter: no cycle any more
    change(watcher, plugins / "logger.py", source("custom-logger", "2.0.0", ("rate-limiter",)))
    assert kernel.get("custom-logger").version == "2.0.0"
    assert watcher.reports[-1].order == ["custom-logger"]


def test_a_refused_file_fixed_afterwards_goes_in(kernel, watcher, plugins):
    change(watcher, plugins / "other.py", source("other", "2.0.0", deps=("spare",)))
    assert kernel.get("other").version == "1.0.0"
    kernel.load("spare")  # the dependency runs now; saving again (new content) works
    change(watcher, plugins / "other.py", source("other", "2.0.1", deps=("spare",)))
    assert kernel.get("other").version == "2.0.1"
    assert kernel.get("other") is not None and kernel.state("other") == ACTIVE


def test_an_import_error_in_a_new_file_registers_nothing(kernel, watcher, plugins):
    change(watcher, plugins / "broken.py", source("broken", extra="import helixlab_nope"))
    (event,) = [e for e in kernel.events() if e.kind == "file_error"]
    assert (event.plugin, event.detail) == ("broken", "broken.py: not loaded")
    assert "broken" not in kernel


# -- %%helix plugin ---------------------------------------------------------------------------


def plugin_cell(text: str) -> str:
    return "%%helix plugin\n" + textwrap.dedent(text)


@pytest.fixture
def helix(ip):
    """A notebook running store (cell-1) <- api (cell-2), a file-defined 'filed', and an
    'idle' plugin that is registered but not running."""
    kernel = ip.user_ns["helix"]
    for cell_id, text in (("cell-1", source("store")), ("cell-2", source("api", deps=("store",)))):
        ran = run(ip, plugin_cell(text), cell_id=cell_id)
        assert ran.error is None, ran.shown
    filed = type("Filed", (hx.Plugin,), {"name": "filed"})
    kernel.define([filed], source="plugins/filed.py", origin="file", unit="plugins/filed.py")
    kernel.register(type("Idle", (hx.Plugin,), {"name": "idle"}))
    return kernel


#: (cell id, cell body, error type, what the last line says)
BAD_CELLS = {
    "import-error": (
        "cell-1",
        source("store", "2.0.0", extra="import helixlab_no_such_module"),
        ModuleNotFoundError,
        "No module named 'helixlab_no_such_module'",
    ),
    "class-without-name": (
        "cell-1",
        source(None, "2.0.0"),
        hx.RegistryError,
        "defines no Plugin subclass with a `name`",
    ),
    "same-name-twice": ("cell-1", two("store", "store"), hx.RegistryError, "more than once"),
    "name-of-a-file-plugin": (
        "cell-9",
        source("filed", "9.9.9"),
        hx.ReloadError,
        "which is already defined in plugins/filed.py",
    ),
    "added-dep-not-running": (
        "cell-2",
        source("api", "2.0.0", deps=("store", "idle")),
        hx.ReloadError,
        "needs 'idle', which is not running",
    ),
    "added-dep-missing": (
        "cell-2",
        source("api", "2.0.0", deps=("store", "ghost")),
        hx.ReloadError,
        "'ghost'",
    ),
    "cycle-by-reload": (
        "cell-1",
        source("store", "2.0.0", deps=("api",)),
        hx.ReloadError,
        "cycle detected: api -> store -> api",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CELLS))
def test_a_bad_cell_is_refused_naming_cell_and_plugin_and_the_old_versions_serve(ip, helix, case):
    cell_id, body, error, needle = BAD_CELLS[case]
    before = serving(helix)
    names = list(helix.names)
    ran = run(ip, plugin_cell(body), cell_id=cell_id)
    assert isinstance(ran.error, error), ran.shown
    assert needle.lower() in ran.last_line.lower(), ran.last_line
    if isinstance(ran.error, hx.PluginError):
        assert repr(ran.error.plugin) in ran.last_line or ran.error.plugin in ran.last_line
    if isinstance(ran.error, hx.RegistryError):  # shown under the cell, and naming it
        assert f"cell [{ran.result.execution_count}]" in ran.last_line
    assert "helixlab/" not in ran.stdout  # the user's error, not helixlab's traceback
    assert serving(helix) == before
    assert helix.names == names


def test_a_removed_dependency_in_a_cell_reloads_fine(ip, helix):
    store = helix.get("store")
    ran = run(ip, plugin_cell(source("api", "2.0.0").replace("class P", "class Q")), "cell-2")
    assert ran.error is None, ran.shown
    assert helix.get("api").version == "2.0.0" and helix.graph.dependencies("api") == []
    assert helix.get("store") is store


# -- fuzzing cell sources ---------------------------------------------------------------------

NAMES = st.sampled_from(["store", "api", "filed", "fresh", "", "idle"]) | st.none()
DEPS = st.lists(st.sampled_from(["store", "api", "ghost", "idle", "fresh", "store>=5", "a b"]))
BODIES = st.sampled_from(
    [
        "",
        "    def start(self, ctx):\n        raise RuntimeError('no')\n",
        "    def init(self, ctx, config):\n        ctx.get('ghost')\n",
        "    def init(self, ctx, config):\n        self.x = ctx.get('store')\n",
        "    def start(self, ctx:\n",
        "    async def start(self, ctx):\n        return None\n",
        "    reload_strategy = 'restart'\n",
        "    reload_strategy = 'sometimes'\n",
        "    version = 'not a version'\n",
        "    dependencies = 'store'\n",
        "    name = 42\n",
    ]
)
CLASSES = st.builds(
    lambda name, version, deps, body: (
        "class C(hx.Plugin):\n"
        + (f"    name = {name!r}\n" if name is not None else "")
        + f"    version = '{version}'\n    dependencies = {tuple(deps)!r}\n{body}"
    ),
    NAMES,
    st.sampled_from(["1.0.0", "2.0.0", "3.0.0"]),
    DEPS,
    BODIES,
)
CELLS = st.builds(
    lambda classes, cell_id: (cell_id, "import helixlab as hx\n\n" + "\n".join(
        c.replace("class C(", f"class C{i}(") for i, c in enumerate(classes)
    )),
    st.lists(CLASSES, min_size=0, max_size=3),
    st.sampled_from(["cell-1", "cell-2", "cell-3"]),
)  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(CELLS, min_size=1, max_size=3))
def test_fuzzed_cells_either_go_in_or_leave_what_served_serving(ip, cells):
    kernel = ip.user_ns["helix"]
    run(ip, "%helix reset")
    kernel = ip.user_ns["helix"]
    for cell_id, body in cells:
        before = serving(kernel)
        classes = dict(kernel._book.registry.entries)
        ran = run(ip, plugin_cell(body), cell_id=cell_id)
        error = ran.error
        event(type(error).__name__ if error else "accepted")
        assert "Traceback" not in ran.stderr
        if error is None:
            continue
        assert str(error), ran.shown  # every refusal says something
        if isinstance(error, hx.ReloadError) and "was registered but failed" in str(error):
            # a new plugin that failed to load: registered and marked failed (changed ones
            # in the same cell were reloaded before it)
            assert kernel.state(error.plugin) == hx.PluginState.FAILED
            continue
        assert serving(kernel) == before, ran.shown
        assert dict(kernel._book.registry.entries) == classes
    # whatever went in, the kernel is consistent: every live plugin's dependencies run
    for name in serving(kernel):
        for dep in kernel.graph.dependencies(name):
            assert kernel.state(dep) == ACTIVE
