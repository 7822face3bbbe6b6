"""tools/setup.sh as `make lab` runs it: waits for another apt, says nothing about tests.

The script runs in a copy of the repository's layout whose .venv is already installed,
with stand-ins for ``apt-get`` (it records its arguments, then succeeds or fails) and
``id`` (root), and a PATH without ``dot``, so it has a system package to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def setup_in(tmp_path: Path, apt_status: int, *args: str) -> tuple[str, list[str]]:
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "setup.sh", repo / "tools" / "setup.sh")
    (repo / "pyproject.toml").write_text("")
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    stamp = repo / ".venv" / ".helixlab-installed"
    stamp.touch()
    os.utime(repo / "pyproject.toml", (1, 1))  # older than the stamp: nothing to pip-install
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "touch", "rm", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "python3").symlink_to(sys.executable)
    calls = tmp_path / "apt-calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit {apt_status}\n')
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")
    for stub in ("apt-get", "id"):
        (bin_dir / stub).chmod(0o755)
    ran = subprocess.run(
        [shutil.which("bash"), str(repo / "tools" / "setup.sh"), *args],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = ran.stderr
    return said, calls.read_text().splitlines() if calls.exists() else []


def test_root_waits_for_another_apt_and_is_told_so(tmp_path):
    said, calls = setup_in(tmp_path, 0, "--lab")
    assert len(calls) == 2  # update, then install
    assert all("DPkg::Lock::Timeout=300" in call for call in calls), calls
    assert "install -y" in calls[1] and "graphviz" in calls[1]
    assert "if another apt is running, this waits up to 5 minutes for it" in said


def test_a_failed_install_as_root_does_not_say_sudo_and_make_lab_says_nothing_of_tests(tmp_path):
    said, _ = setup_in(tmp_path, 100, "--lab")
    assert "install them with 'apt-get install graphviz'" in said
    assert "sudo" not in said
    assert "test" not in said


def test_make_lab_runs_the_learners_setup():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile.split("\nlab:\n", 1)[1].splitlines()[0]
    assert lab.strip() == "@tools/setup.sh --lab"
