"""``helixlab serve`` as a subprocess: its URL, its stderr lines (awaited, never slept on),
and steady traffic counting every request that failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx

STAMP_PLUGIN = """
import helixlab as hx

STAMP = b"{stamp}"


class HeaderStamp(hx.MiddlewarePlugin):
    name = "header-stamp"
    version = "{version}"

    def get_middleware(self):
        def factory(app):
            async def stamped(scope, receive, send):
                {body}
                async def stamping(message):
                    if message["type"] == "http.response.start":
                        message.setdefault("headers", []).append((b"x-stamp", STAMP))
                    await send(message)

                await app(scope, receive, stamping)

            return stamped

        return factory
"""


def stamp_plugin(stamp: str, version: str = "1.0.0", broken: bool = False) -> str:
    """A middleware adding ``x-stamp``; ``broken``: it raises on every request."""
    body = 'raise RuntimeError("broken on every request")' if broken else "pass"
    return STAMP_PLUGIN.format(stamp=stamp, version=version, body=body)


class Served:
    """A running ``helixlab serve``; ``wait_for(regex)`` blocks until stderr has a match."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, cwd=None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "helixlab", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            self.process.wait(20)
            self._reader.join(5)
            raise AssertionError("helixlab serve did not start:\n" + self.stderr)
        self.wait_for(r"^helixlab: serving ")  # what it said before the URL has been read

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    def wait_for(self, pattern: str, after: int = 0, timeout: float = 20) -> re.Match:
        regex = re.compile(pattern)
        found: list[re.Match] = []

        def seen() -> bool:
            for line in self.lines[after:]:
                if match := regex.search(line):
                    found.append(match)
                    return True
            return self.process.poll() is not None

        with self._changed:
            self._changed.wait_for(seen, timeout)
        assert found, f"no line matching {pattern!r} in:\n{self.stderr}"
        return found[0]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(5)
        return code


class Traffic:
    """Requests in a loop from a thread until stopped; every non-200 or error is kept."""

    def __init__(self, url: str, path: str = "/v1/chat/completions", model: str = "mock-small"):
        self.url, self.path, self.model = url, path, model
        self.ok = 0
        self.failures: list[str] = []
        self.stamps: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=self.url, timeout=20) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.path, json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if response.status_code == 200:
                        self.ok += 1
                        self.stamps.append(response.headers.get("x-stamp", ""))
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                self._first.set()

    def __enter__(self) -> Traffic:
        self._thread.start()
        assert self._first.wait(20), "no request completed"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def write(path: Path, text: str) -> None:
    """Save as an editor does: the whole new content appears at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
