"""The grader's side of one kernel: cells sent under a time limit, their replies, Ctrl-C.

A grader cell is ``exec`` of ``_inkernel.py``'s source text (read here, once) plus one
call, with a fresh nonce; of everything the cell shows, only the one bundle carrying that
nonce is its result.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._extras import needs

with needs("grade", "helixlab grade"):  # imported only by helixlab grade: one line if missing
    import nbformat
    import psutil
    import zmq
    import zmq.asyncio
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

from . import _inkernel
from ._isolation import MARK, KernelPlace
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


#: What a live session says after a failed cell; a grading kernel serves nothing before it.
_LIVE = re.compile(
    r"[;.,]?\s*(nothing was changed, )?the (running|old) versions keep serving\.?", re.IGNORECASE
)


def _one_line(ename: str, evalue: Any) -> str:
    value = str(evalue or "").strip().splitlines()
    first = _LIVE.sub("", value[0][:300]) if value else ""
    return f"{ename}: {first}" if first else ename


@dataclass
class Ran:
    cell: Any
    timed_out: bool
    seconds: float
    reply: Mapping[str, Any] | None = None

    def error(self) -> str | None:
        """The cell's error in one line: a raised one, or one IPython printed (UsageError)."""
        for output in self.cell.get("outputs", []):
            if output.get("output_type") == "error":
                return _one_line(output.get("ename", "Error"), output.get("evalue"))
        reply = self.reply or {}
        if reply.get("status") == "error":  # %magic UsageErrors are printed, not shown as errors
            return _one_line(reply.get("ename") or "Error", reply.get("evalue"))
        return None

    @property
    def truncated(self) -> int:
        """Characters of output the kernel sent in this cell that were not kept."""
        return int(self.cell.get("metadata", {}).get("helixlab_dropped", 0))

    def bundles(self) -> list[dict[str, Any]]:
        found = []
        for output in self.cell.get("outputs", []):
            data = output.get("data", {}) if isinstance(output, Mapping) else {}
            if _inkernel.MIME in data and isinstance(data[_inkernel.MIME], Mapping):
                found.append(dict(data[_inkernel.MIME]))
        return found


#: Per socket of the grader's client: the largest message a kernel may send (a bigger one
#: drops the connection: the cell then times out) and how many may wait to be read. Output
#: past the caps is dropped in the kernel (``_inkernel.cap_output``); these bound what a
#: kernel that removed that cap can make the grader hold.
MAX_MESSAGE = 16 * 1024 * 1024
QUEUED = 64


class _Manager(AsyncKernelManager):
    """A kernel manager whose kernel command starts with ``prefix`` (the sandbox), and whose
    clients read through sockets with bounded messages and queues."""

    prefix: tuple[str, ...] = ()
    contexts: list[zmq.asyncio.Context]

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*self.prefix, *super().format_kernel_cmd(extra_arguments)]

    def client(self, **kwargs: Any) -> Any:
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        context.setsockopt(zmq.RCVHWM, QUEUED)
        self.contexts.append(context)
        return super().client(context=context, **kwargs)


class _Client(NotebookClient):
    """nbclient, with the kernel placed as ``place`` says and each cell's output capped.

    Of what a cell shows, only ``cell_cap`` characters of text are kept (and ``total_cap``
    over the whole kernel), plus at most ``_BUNDLES`` result bundles; the rest is counted
    in the cell's metadata (``helixlab_dropped``, ``helixlab_bundles``), never stored.
    """

    def setup(self, place: KernelPlace, cell_cap: int, total_cap: int) -> None:
        self._place, self._cell_cap, self._left = place, cell_cap, total_cap
        self.contexts: list[zmq.asyncio.Context] = []

    def create_kernel_manager(self) -> Any:
        place = self._place
        manager = _Manager(kernel_name=self.kernel_name, config=self.config)
        manager.prefix = place.prefix
        manager.contexts = self.contexts
        if place.prefix:  # in the sandbox: IPC sockets in a bound folder; no group signals
            manager.transport = "ipc"
            manager.ip = str(place.ipc / "k")
            manager.connection_file = str(place.ipc / "kernel.json")
            manager.kernel_spec.interrupt_mode = "message"
        self.km = manager
        return manager

    def output(self, outs: list, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None and outs and outs[-1] is out:
            self._cap(outs, out)
        return out

    def _cap(self, outs: list, out: Any) -> None:
        meta = self.nb.cells[-1].setdefault("metadata", {})
        kind = out.get("output_type")
        if kind in ("display_data", "execute_result") and _inkernel.MIME in out.get("data", {}):
            meta["helixlab_bundles"] = meta.get("helixlab_bundles", 0) + 1
            if meta["helixlab_bundles"] > _BUNDLES:
                outs.pop()
            return
        if kind == "error":
            out["traceback"] = []  # the report shows ename and the first line of evalue
            out["evalue"] = str(out.get("evalue", ""))[:2000]
            return
        size = len(str(out.get("text", ""))) if kind == "stream" else len(str(out.get("data")))
        kept = meta.get("helixlab_kept", 0)
        room = max(0, min(self._cell_cap - kept, self._left))
        if size <= room:
            meta["helixlab_kept"] = kept + size
            self._left -= size
            return
        meta["helixlab_dropped"] = meta.get("helixlab_dropped", 0) + size - room
        if kind == "stream" and room:
            out["text"] = out["text"][:room]
            meta["helixlab_kept"] = kept + room
            self._left -= room
        else:
            outs.pop()


_BUNDLES = 4  # result bundles kept per cell: one is the grader's, more are forged


class GradingKernel:
    """A notebook client bound to one kernel; ``run`` sends one cell under a time limit."""

    def __init__(self, place: KernelPlace, limits: Limits):
        self.nb = nbformat.v4.new_notebook()
        self.place = place
        self.replies: dict[int, Mapping[str, Any]] = {}
        self.pid: int | None = None
        self.pgid: int | None = None
        self.client = _Client(
            self.nb,
            kernel_name="python3",
            timeout=int(limits.cell),
            startup_timeout=math.ceil(limits.startup),
            interrupt_on_timeout=True,
            allow_errors=True,
            record_timing=False,
            shutdown_kernel="immediate",
            shell_timeout_interval=1,
            resources={"metadata": {"path": str(place.work)}},
            on_cell_executed=self._executed,
            log=_QUIET,
        )
        self.client.setup(place, limits.cell_output, limits.output)
        self.forged = 0

    def started(self) -> None:
        """The kernel runs: note its process and group, to end them however it ends."""
        process = self._process()
        if process is not None:
            self.pid = process.pid
            with contextlib.suppress(OSError):
                self.pgid = os.getpgid(process.pid)

    def reap(self) -> list[int]:
        """Kill whatever the kernel started that still runs; the pids killed.

        Its process group (a crashed kernel's children are not stopped by the shutdown),
        then any process carrying this kernel's mark in its environment (a child that left
        the group). In the sandbox the PID namespace ends with the kernel as well.
        """
        for context in self.client.contexts:  # the client's sockets are closed by now
            context.destroy(linger=0)
        self.client.contexts.clear()
        mark = self.place.env.get(MARK)
        group = self.pgid if self.pgid and self.pgid != os.getpgid(0) else None
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if (group and _in_group(process, group)) or (
                    _running(process) and process.environ().get(MARK) == mark
                ):
                    found.append(process)
        # a kernel shut down was killed with its group just now: give those a moment to go
        _, left = psutil.wait_procs(found, timeout=1) if found else ([], [])
        if group:
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()
        return sorted(process.pid for process in left)

    def _executed(self, cell: Any, cell_index: int, execute_reply: Mapping[str, Any]) -> None:
        self.replies[cell_index] = execute_reply

    async def run(self, source: str, timeout: float, *, history: bool = True) -> Ran:
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
        content = self.replies.pop(index, {}).get("content", {})
        if index > 0:  # what the report needs of the cell before is in its Ran
            self.nb.cells[index - 1] = nbformat.v4.new_code_cell()
        return Ran(cell, content.get("ename") == _TIMEOUT, time.monotonic() - started, content)

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
        shown = ran.cell.get("metadata", {}).get("helixlab_bundles", len(bundles))
        self.forged += shown - len(mine) + max(0, len(mine) - 1)
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
        if self.place.prefix and code > 128:  # bwrap exits 128 + N for a kernel killed by N
            code = 128 - code
        return f" (exit status {code})" if code >= 0 else f" (killed by signal {-code})"


def _running(process: psutil.Process) -> bool:
    """Whether ``process`` runs: not the grader, not a zombie (exited, not reaped yet)."""
    try:
        return process.pid != os.getpid() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _in_group(process: psutil.Process, pgid: int) -> bool:
    try:
        return _running(process) and os.getpgid(process.pid) == pgid
    except OSError:
        return False


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
