"""Plugins directories and fresh imports (helixlab.sources), entry points (the kernel's)."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import textwrap
import types
from pathlib import Path

import pytest

import helixlab as hx
from helixlab import sources as helix_sources
from helixlab.errors import PluginError, RegistryError
from helixlab.kernel._fingerprint import class_fingerprint


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def plugin_source(name: str, version: str = "1.0.0", deps: tuple[str, ...] = ()) -> str:
    return f"""\
import helixlab as hx

class P(hx.Plugin):
    name = {name!r}
    version = {version!r}
    dependencies = {deps!r}
"""


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    """``logger.py``, a ``limiter/`` package with sibling modules, and things to skip."""
    root = tmp_path / "plugins"
    write(root / "logger.py", plugin_source("custom-logger"))
    write(
        root / "limiter" / "plugin.py",
        """\
        import helixlab as hx
        from .config import DEFAULT_RATE
        from .models import bucket

        class RateLimiter(hx.MiddlewarePlugin):
            name = "rate-limiter"
            dependencies = ("custom-logger>=1.0",)

            def init(self, ctx, config):
                self.bucket = bucket(DEFAULT_RATE)

            def get_middleware(self):
                return lambda app: app
        """,
    )
    write(root / "limiter" / "config.py", "DEFAULT_RATE = 7\n")
    write(root / "limiter" / "models.py", "def bucket(rate):\n    return {'rate': rate}\n")
    write(root / "_private.py", plugin_source("private"))
    write(root / "notes" / "README.py", plugin_source("not-a-unit"))  # no plugin.py
    write(root / "data.txt", "not python")
    return root


def test_discover_registers_file_and_package_units_with_sibling_imports(kernel, plugins_dir):
    assert kernel.discover(plugins_dir) == ["rate-limiter", "custom-logger"]
    assert kernel.load_all() == ["custom-logger", "rate-limiter"]
    assert kernel.get("rate-limiter").bucket == {"rate": 7}
    rows = {r.name: r for r in kernel.info()}
    assert rows["custom-logger"].origin == "file"
    assert rows["rate-limiter"].source == str((plugins_dir / "limiter" / "plugin.py").resolve())
    assert rows["rate-limiter"].kind == "middleware"


def test_discover_twice_registers_nothing_new(kernel, plugins_dir):
    kernel.discover(plugins_dir)
    assert kernel.discover(plugins_dir) == []


def test_units_skip_private_files_and_directories_without_plugin_py(plugins_dir):
    assert [u.name for u in helix_sources.plugin_units(plugins_dir)] == ["limiter", "logger"]


def test_only_plugin_classes_defined_in_the_file_are_found(tmp_path):
    path = write(
        tmp_path / "mixed.py",
        """\
        import helixlab as hx
        from helixlab import Plugin as Imported

        class Base(hx.Plugin):
            pass  # no name: a base class, not a plugin

        class Real(Base):
            name = "real"

        class NotAPlugin:
            name = "nope"
        """,
    )
    (unit,) = helix_sources.plugin_units(tmp_path)
    assert unit.path == path.resolve()
    assert [cls.name for cls in helix_sources.import_unit(unit)] == ["real"]


def test_each_import_reads_the_file_afresh_even_when_size_and_mtime_match(tmp_path):
    path = write(tmp_path / "p.py", plugin_source("p", "1.0.0"))
    (unit,) = helix_sources.plugin_units(tmp_path)
    stat = path.stat()
    (first,) = helix_sources.import_unit(unit)
    path.write_text(plugin_source("p", "2.0.0"))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (second,) = helix_sources.import_unit(unit)
    assert (first.version, second.version) == ("1.0.0", "2.0.0")
    assert not list(tmp_path.rglob("*.pyc"))


def test_one_read_is_both_imported_and_fingerprinted_a_later_save_is_the_next_change(plugins_dir):
    """What runs is what was fingerprinted: a save after the read (of the plugin file, or
    of a sibling module) is not imported until the unit is read again."""
    unit = next(u for u in helix_sources.plugin_units(plugins_dir) if u.name == "limiter")
    sources = unit.read()
    write(plugins_dir / "limiter" / "config.py", "DEFAULT_RATE = 9\n")
    write(plugins_dir / "limiter" / "plugin.py", plugin_source("renamed"))
    (cls,) = helix_sources.import_unit(unit, sources)
    assert cls.name == "rate-limiter" and sys.modules[cls.__module__].DEFAULT_RATE == 7
    assert sources.fingerprint(cls) != unit.read().fingerprint(cls)
    assert [c.name for c in helix_sources.import_unit(unit)] == ["renamed"]


def test_a_syntax_error_names_the_file_and_line(kernel, tmp_path):
    write(tmp_path / "ok.py", plugin_source("ok"))
    broken = write(tmp_path / "broken.py", "import helixlab as hx\n\nclass P(hx.Plugin:\n")
    with pytest.raises(PluginError) as info:
        kernel.discover(tmp_path)
    assert info.value.phase == "import" and info.value.plugin == "broken"
    assert f"{broken.resolve()}:3" in str(info.value) and "SyntaxError" in str(info.value)
    assert kernel.names == []  # nothing half-registered
    assert not [m for m in sys.modules if m.startswith("_helixlab_unit_broken")]


def test_an_exception_while_importing_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "boom.py", "x = 1\nraise RuntimeError('bad plugin file')\n")
    (unit,) = helix_sources.plugin_units(tmp_path)
    with pytest.raises(PluginError, match=rf"{path.resolve()}:2: RuntimeError: bad plugin file"):
        helix_sources.import_unit(unit)


def test_sys_exit_at_a_plugin_files_top_level_is_its_import_error_and_the_kernel_goes_on(
    kernel, tmp_path
):
    write(tmp_path / "quits.py", "import sys\nsys.exit(3)\n")
    with pytest.raises(PluginError, match=r"quits.py:2: SystemExit: 3") as info:
        kernel.discover(tmp_path)
    assert info.value.phase == "import" and info.value.plugin == "quits"
    assert kernel.names == [] and kernel.health() == {}  # its loop still serves


def test_a_missing_directory_is_refused(kernel, tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        kernel.discover(tmp_path / "nowhere")


def test_a_duplicate_name_across_files_keeps_the_first(kernel, tmp_path):
    write(tmp_path / "a.py", plugin_source("same", "1.0.0"))
    write(tmp_path / "b.py", plugin_source("same", "2.0.0"))
    assert kernel.discover(tmp_path) == ["same"]
    assert kernel.plugin_class("same").version == "1.0.0"


# -- entry points --------------------------------------------------------------------------


class FakeEntryPoint:
    def __init__(self, name: str, value: str, obj: object):
        self.name, self.value, self._obj = name, value, obj

    def load(self) -> object:
        if isinstance(self._obj, BaseException):
            raise self._obj
        return self._obj


@pytest.fixture
def entry_points(monkeypatch):
    """Install fake entry points: ``entry_points({"group": [FakeEntryPoint, ...]})``."""

    def install(groups: dict[str, list[FakeEntryPoint]]) -> None:
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: groups.get(group, []))

    return install


def test_entry_points_may_name_a_class_a_module_or_a_list(kernel, entry_points, make_plugin):
    module = types.ModuleType("vendor_plugins")
    in_module = make_plugin("from-module")
    in_module.__module__ = "vendor_plugins"
    module.Thing = in_module
    module.Imported = hx.Plugin  # defined elsewhere: not found
    entry_points(
        {
            "helixlab.plugins": [
                FakeEntryPoint("z-class", "vendor:Cls", make_plugin("from-class")),
                FakeEntryPoint("module", "vendor_plugins", module),
                FakeEntryPoint("list", "vendor:ALL", [make_plugin("l1"), make_plugin("l2")]),
            ]
        }
    )
    found = helix_sources.entry_points("helixlab.plugins")
    assert [cls.name for _, cls in found] == ["l1", "l2", "from-module", "from-class"]
    assert found[0][0] == "entry point list = vendor:ALL"
    assert kernel.discover_entry_points() == ["l1", "l2", "from-module", "from-class"]
    assert {r.origin for r in kernel.info()} == {"entry-point"}
    assert kernel.discover_entry_points() == []  # already registered


def test_a_broken_entry_point_names_itself(kernel, entry_points):
    entry_points({"helixlab.plugins": [FakeEntryPoint("bad", "vendor:X", ImportError("no x"))]})
    with pytest.raises(PluginError, match="Entry point bad = vendor:X failed: ImportError: no x"):
        kernel.discover_entry_points()


def test_an_entry_point_calling_sys_exit_names_itself_and_the_kernel_goes_on(kernel, entry_points):
    entry_points({"helixlab.plugins": [FakeEntryPoint("quits", "vendor:X", SystemExit(2))]})
    with pytest.raises(PluginError, match="Entry point quits = vendor:X failed: SystemExit"):
        kernel.discover_entry_points()
    assert kernel.names == [] and kernel.health() == {}  # its loop still serves


def test_another_group_can_be_searched(kernel, entry_points, make_plugin):
    entry_points({"other.group": [FakeEntryPoint("p", "v:P", make_plugin("p"))]})
    assert kernel.discover_entry_points() == []
    assert kernel.discover_entry_points("other.group") == ["p"]


# -- fingerprints ----------------------------------------------------------------------------


def test_fingerprints_follow_the_code_not_the_class_object():
    def define(body: str) -> type:
        namespace: dict = {}
        exec(f"import helixlab as hx\nclass P(hx.Plugin):\n    name = 'p'\n{body}", namespace)
        return namespace["P"]

    same = "    def start(self, ctx):\n        return 1\n"
    other = "    def start(self, ctx):\n        return 2\n"
    assert class_fingerprint(define(same)) == class_fingerprint(define(same))
    assert class_fingerprint(define(same)) != class_fingerprint(define(other))
    assert class_fingerprint(define("    version = '1'\n")) != class_fingerprint(
        define("    version = '2'\n")
    )


def test_discover_skips_a_symlink_pointing_outside_the_directory(kernel, tmp_path):
    """Code is loaded only from the directory given, as the file watcher does."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.py").write_text(
        "import helixlab as hx\nclass Evil(hx.Plugin):\n    name = 'evil'\n"
    )
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "evil.py").symlink_to(outside / "evil.py")
    (plugins / "good.py").write_text(
        "import helixlab as hx\nclass Good(hx.Plugin):\n    name = 'good'\n"
    )
    assert kernel.discover(plugins) == ["good"]
