"""docs/plugin-authors.md, walked as an author does: its files written out, the package
installed from its pyproject.toml, its tests run with the toolkit, served, configured,
hot-reloaded, refused by the canary, with the outputs the page shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from _serving import Served, Traffic, write

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugin-authors.md"
KEY = "doc-walk-admin-key-0123"


def doc_files() -> dict[str, str]:
    text = DOC.read_text()
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.S))


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=cwd,
    )


def test_the_plugin_author_walk(tmp_path: Path):
    files = doc_files()
    assert set(files) == {
        "header-stamp/pyproject.toml",
        "header-stamp/header_stamp.py",
        "header-stamp/tests/test_header_stamp.py",
        "plugins.yaml",
    }
    for name, text in files.items():
        write(tmp_path / name, text)
    project = tmp_path / "header-stamp"
    site = tmp_path / "site"
    # step 1: install it from its pyproject.toml (an editable install: the module is
    # imported from the project, the entry point comes from the installed metadata)
    install = run(
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--target",
        str(site),
        str(project),
        env={},
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    (site / "header_stamp.py").unlink()
    shutil.rmtree(site / "__pycache__", ignore_errors=True)
    env = {"PYTHONPATH": f"{project}{os.pathsep}{site}", "HELIXLAB_ADMIN_KEY": KEY}

    # step 2: its tests, with the toolkit's fixtures and no conftest
    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", env=env, cwd=project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    # step 3: serve it
    served = Served(["plugins.yaml", "--port", "0"], env=env, cwd=tmp_path)
    client = {**env, "HELIXLAB_URL": served.url}
    try:
        served.wait_for(f"admin API on {served.url}/admin")  # stderr may trail stdout
        assert "entry points 'helixlab.plugins': header-stamp" in served.stderr
        assert "loaded 2: custom-provider, header-stamp" in served.stderr
        assert httpx.get(served.url + "/v1/models").headers["x-stamp"] == "v1"

        with Traffic(served.url) as traffic:
            # step 4: configure
            configured = run(
                "-m", "helixlab", "configure", "header-stamp", "value=v2", env=client, cwd=tmp_path
            )
            assert configured.returncode == 0, configured.stderr
            assert configured.stdout == (
                "reloaded header-stamp: 1 plugin(s), dependencies first\n  1. header-stamp 1.0.0\n"
            )
            # step 5: edit and reload
            source = project / "header_stamp.py"
            write(source, source.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
            reloaded = run("-m", "helixlab", "reload", "header-stamp", env=client, cwd=tmp_path)
            assert reloaded.returncode == 0, reloaded.stderr
            assert reloaded.stdout == (
                "reloaded header-stamp: 1 plugin(s), dependencies first\n"
                "  1. header-stamp 1.0.0 -> 1.1.0\n"
            )
            # step 6: a version broken on every request is refused by the canary
            broken = source.read_text().replace('version = "1.1.0"', 'version = "1.2.0"')
            broken = broken.replace(
                "            async def stamped(scope, receive, send):\n",
                "            async def stamped(scope, receive, send):\n"
                '                raise RuntimeError("broken on every request")\n',
            )
            write(source, broken)
            refused = run("-m", "helixlab", "reload", "header-stamp", env=client, cwd=tmp_path)
        assert refused.returncode == 1
        assert refused.stderr == (
            "reload of header-stamp rolled back: header-stamp failed in verify\n"
            "  error: RuntimeError: broken on every request\n"
            "  1. header-stamp 1.1.0 -> 1.2.0\n"
            "  the old versions keep serving\n"
        )
        assert traffic.failures == [] and traffic.ok > 0
        assert httpx.get(served.url + "/v1/models").headers["x-stamp"] == "v2"
        # step 7: status
        status = run("-m", "helixlab", "status", env=client, cwd=tmp_path)
        assert status.returncode == 0
        assert status.stdout.splitlines()[2].split()[:6] == [
            "header-stamp",
            "1.1.0",
            "middleware",
            "active",
            "unknown",
            "2",
        ]
    finally:
        assert served.stop() == 0
    assert KEY not in served.stderr and "Traceback" not in served.stderr
