"""The grader's side of one kernel: cells sent under a time limit, their replies, Ctrl-C.

A grader cell is ``exec`` of ``_inkernel.py``'s source text (read here, once) plus one
call, with a fresh nonce; of everything the cell shows, only the one bundle carrying that
nonce is its result.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._extras import needs
from . import _inkernel
from ._results import Limits

__all__ = ["Dead", "GradingKernel", "Ran", "Stopper", "Stuck"]

_TIMEOUT = "HelixlabGradingTimeout"
_HELPER = Path(_inkernel.__file__).read_text(encoding="utf-8")
_QUIET = logging.getLogger("helixlab.grading.nbclient")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class Dead(Exception):
    """The kernel process died."""


class Stuck(Exception):
    """The kernel stayed busy after an interrupt."""


@dataclass
class Ran:
    cell: Any
    timed_out: bool
    seconds: float

    def error(self) -> str | None:
        for output in self.cell.get("outputs", []):
            if output.get("output_type") == "error":
                value = str(output.get("evalue", "")).strip().splitlines()
                first = value[0][:300] if value else ""
                return f"{output.get('ename', 'Error')}: {first}" if first else output.get("ename")
        return None

    def bundles(self) -> list[dict[str, Any]]:
        found = []
        for output in self.cell.get("outputs", []):
            data = output.get("data", {}) if isinstance(output, Mapping) else {}
            if _inkernel.MIME in data and isinstance(data[_inkernel.MIME], Mapping):
                found.append(dict(data[_inkernel.MIME]))
        return found


class GradingKernel:
    """A notebook client bound to one kernel; ``run`` sends one cell under a time limit."""

    def __init__(self, workdir: Path, limits: Limits):
        with needs("grade", "helixlab grade"):
            import nbformat
            from nbclient import NotebookClient

        self.nb = nbformat.v4.new_notebook()
        self.replies: dict[int, Mapping[str, Any]] = {}
        self.client = NotebookClient(
            self.nb,
            kernel_name="python3",
            timeout=int(limits.cell),
            startup_timeout=math.ceil(limits.startup),
            interrupt_on_timeout=True,
            allow_errors=True,
            record_timing=False,
            shutdown_kernel="immediate",
            shell_timeout_interval=1,
            resources={"metadata": {"path": str(workdir)}},
            on_cell_executed=self._executed,
            log=_QUIET,
        )
        self.forged = 0

    def _executed(self, cell: Any, cell_index: int, execute_reply: Mapping[str, Any]) -> None:
        self.replies[cell_index] = execute_reply

    async def run(self, source: str, timeout: float, *, history: bool = True) -> Ran:
        with needs("grade", "helixlab grade"):
            import nbformat
            from nbclient.exceptions import DeadKernelError

        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        index = len(self.nb.cells) - 1
        self.client.timeout = max(1, math.ceil(timeout))
        self.client.error_on_timeout = {"ename": _TIMEOUT, "evalue": f"{timeout:g} s"}
        started = time.monotonic()
        try:
            cell = await self.client.async_execute_cell(cell, index, store_history=history)
        except DeadKernelError:
            raise Dead from None
        content = self.replies.get(index, {}).get("content", {})
        return Ran(cell, content.get("ename") == _TIMEOUT, time.monotonic() - started)

    async def grader_cell(self, function: str, timeout: float, *args: Any) -> tuple[Ran, Any]:
        """Run ``_inkernel.<function>(nonce, *args)``; the one bundle that carries the nonce."""
        nonce = secrets.token_hex(16)
        call = f"{function}({', '.join(map(repr, (nonce, *args)))})"
        code = f"{_HELPER}\n{call}\n"
        scope = "{'__name__': 'helixlab_grading'}"
        source = f"exec(compile({code!r}, '<helixlab grading>', 'exec'), {scope})"
        ran = await self.run(source, timeout, history=False)
        bundles = ran.bundles()
        mine = [b for b in bundles if b.get("nonce") == nonce]
        self.forged += len(bundles) - len(mine) + max(0, len(mine) - 1)
        return ran, (mine[0] if len(mine) == 1 else None)

    async def responsive(self) -> None:
        """After an interrupted cell: raise Stuck if the kernel does not answer within 10 s."""
        ran = await self.run("pass", 10, history=False)
        if ran.timed_out:
            raise Stuck

    def _process(self) -> Any:
        return getattr(getattr(self.client.km, "provisioner", None), "process", None)

    def kill(self) -> None:
        """Kill the kernel process (from any thread): its cell ends as a dead kernel does."""
        process = self._process()
        if process is not None and process.poll() is None:
            process.kill()

    def exit_status(self) -> str:
        process = self._process()
        code = process.poll() if process is not None else None
        if code is None:
            return ""
        return f" (exit status {code})" if code >= 0 else f" (killed by signal {-code})"


class Stopper:
    """Ctrl-C for a grading run: every running kernel is killed, and no new one starts.

    Killing, rather than cancelling the asyncio tasks, lets nbclient see a dead kernel
    and shut its channels down in order; cancelled in the middle of a cell, it leaves
    polling tasks behind on closed zmq sockets (which can abort the process at exit).
    """

    def __init__(self) -> None:
        self.requested = False
        self._kernels: set[GradingKernel] = set()
        self._lock = threading.Lock()

    def track(self, kernel: GradingKernel) -> None:
        with self._lock:
            self._kernels.add(kernel)
            if self.requested:
                kernel.kill()

    def forget(self, kernel: GradingKernel) -> None:
        with self._lock:
            self._kernels.discard(kernel)

    def stop(self) -> None:
        with self._lock:
            self.requested = True
            for kernel in self._kernels:
                kernel.kill()
