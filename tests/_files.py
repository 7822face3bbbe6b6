"""Saving plugin files as an editor does, and waiting for the file watcher to handle them."""

import os
import textwrap
from pathlib import Path

import helixlab as hx


def save(path: Path, text: str) -> None:
    """Save as an editor does: the whole new content appears at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(text))
    os.replace(tmp, path)


def change(watcher: hx.FileWatcher, path: Path, text: str) -> None:
    """Save ``path`` and wait until the watcher has handled it."""
    before = watcher.batches
    save(path, text)
    assert watcher.wait_for_batch(before, timeout=10), "the watcher saw no change"


def hello_plugin(directory: Path) -> Path:
    """``directory/hello.py``, a plugin file holding ``hello`` 1.0.0; its path."""
    path = directory / "hello.py"
    save(
        path,
        """
        import helixlab as hx

        class Hello(hx.Plugin):
            name = "hello"
            version = "1.0.0"
        """,
    )
    return path
