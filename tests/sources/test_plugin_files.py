"""Plugin files and packages refuse, at load, what could only fail later (issue 12): a
Plugin class without a ``name`` (reported with file and class), a kind without its hook."""

from __future__ import annotations

from pathlib import Path

import pytest

import helixlab as hx

from _files import save


def test_a_nameless_class_is_reported_with_file_line_and_class(tmp_path: Path, kernel):
    save(tmp_path / "forgot.py", "import helixlab as hx\n\n\nclass Forgot(hx.Plugin):\n    pass\n")
    with pytest.raises(hx.PluginError) as info:
        kernel.discover(tmp_path)
    assert f"class Forgot in {tmp_path / 'forgot.py'}:4" in str(info.value)
    assert info.value.phase == "import"


def test_a_nameless_base_that_other_plugins_extend_is_fine(tmp_path: Path, kernel):
    save(
        tmp_path / "family.py",
        """\
        import helixlab as hx


        class Base(hx.Plugin):
            version = "2.0.0"


        class Child(Base):
            name = "child"
        """,
    )
    assert kernel.discover(tmp_path) == ["child"]


@pytest.mark.parametrize(
    ("kind", "hook"),
    [
        ("MiddlewarePlugin", "get_middleware"),
        ("ProviderPlugin", "get_provider"),
        ("ToolPlugin", "get_tools"),
    ],
)
def test_a_kind_without_its_hook_is_refused_at_load(tmp_path: Path, kernel, kind, hook):
    save(
        tmp_path / "half.py",
        f"import helixlab as hx\n\n\nclass Half(hx.{kind}):\n    name = 'half'\n",
    )
    with pytest.raises(hx.PluginError) as info:
        kernel.discover(tmp_path)
    assert f"is a {kind} but does not define {hook}()" in str(info.value)
    assert "class Half in" in str(info.value) and "half" not in kernel


def test_the_watcher_reports_a_hookless_save_and_the_old_version_serves(tmp_path: Path, kernel):
    save(
        tmp_path / "mw.py",
        "import helixlab as hx\n\n\nclass M(hx.MiddlewarePlugin):\n    name = 'mw'\n\n"
        "    def get_middleware(self):\n        return lambda app: app\n",
    )
    kernel.discover(tmp_path)
    kernel.load_all()
    with kernel.watch_files(tmp_path, debounce=200, step=20) as watcher:
        before = watcher.batches
        save(
            tmp_path / "mw.py",
            "import helixlab as hx\n\n\nclass M(hx.MiddlewarePlugin):\n    name = 'mw'\n",
        )
        assert watcher.wait_for_batch(before)
    assert "does not define get_middleware()" in str(watcher.errors[-1])
    assert kernel.state("mw") == "active"
