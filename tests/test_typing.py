"""The plugin hooks are typed (issue 12): helixlab ships py.typed, and a type checker run
on a plugin author's file catches a misspelt config field, a wrong ``init`` config type
and a ``get_middleware`` that returns no factory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    path = tmp_path / "header_stamp.py"
    path.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT)},  # helixlab as installed (not an import hook)
    )


def doc_plugin() -> str:
    text = (ROOT / "docs" / "plugin-authors.md").read_text()
    return re.search(
        r"<!-- file: header-stamp/header_stamp.py -->\n```python\n(.*?)```", text, re.S
    )[1]


def test_the_docs_plugin_type_checks(tmp_path: Path):
    result = mypy(tmp_path, doc_plugin())
    assert result.returncode == 0, result.stdout
    assert "Success: no issues found" in result.stdout


def test_a_type_checker_catches_what_an_author_gets_wrong(tmp_path: Path):
    source = doc_plugin()
    source = source.replace("config.value.encode()", "config.valeu.encode()")
    source = source.replace("        return factory\n", '        return "not a factory"\n')
    result = mypy(tmp_path, source)
    assert result.returncode == 1
    assert '"StampConfig" has no attribute "valeu"' in result.stdout
    assert 'Incompatible return value type (got "str"' in result.stdout
    other = doc_plugin().replace("config: StampConfig) -> None:", "config: int) -> None:")
    wrong = mypy(tmp_path, other)  # init must take the plugin's own config model
    assert 'Argument 2 of "init" is incompatible with supertype' in wrong.stdout


def test_the_package_type_checks(tmp_path: Path):
    """mypy on helixlab (the kernel included: issue 22), with pyproject.toml's settings."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "helixlab"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
