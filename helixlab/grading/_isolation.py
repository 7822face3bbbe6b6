"""What a submission's kernel can reach: its environment, its bytecode, and the sandbox.

Every kernel, sandboxed or not, gets a private home, IPython and Jupyter directories and
``TMPDIR`` (so that a startup file one submission writes is never run by the next), and
reads bytecode only from a private ``PYTHONPYCACHEPREFIX``: a copy, made for that kernel,
of bytecode the grader compiled once at the start (``PYTHONDONTWRITEBYTECODE`` too). No
``__pycache__`` beside a source file is ever read, so bytecode planted there changes
nothing a later kernel imports.

With the sandbox (``--sandbox on``, or ``auto`` where bubblewrap works) the kernel runs
under ``bwrap``: the Python installation, its ``sys.path`` and helixlab read-only, nothing
else of the machine but ``/usr``, ``/etc`` and the like (read-only); its working copy and
private directories writable, its own ``/tmp``; its own network namespace (a loopback of
its own, for the labs' servers) and PID namespace (nothing it starts outlives it); the
grader talks to it over IPC sockets in a directory bound into it. Paths the grader must
keep from it (the hidden checks, the submissions, the reports) are covered: with empty
decoys the grader watches, so that an attempt to read or write them fails and is seen
(``_attempts``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GradingError

__all__ = [
    "MARK",
    "MODES",
    "Cover",
    "Isolation",
    "KernelPlace",
    "bwrap_problem",
    "choose",
    "prepare",
]

MODES = ("auto", "on", "off")
#: The environment variable that marks every process a grading kernel started.
MARK = "HELIXLAB_GRADING_KERNEL"
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt")
_WARM = (
    "import json, sys, ipykernel.kernelapp, IPython\n"
    "from helixlab.grading import _inkernel\n"
    "_inkernel.import_everything()\n"
    "print(json.dumps({'path': sys.path, 'prefixes': [sys.prefix, sys.base_prefix,"
    " sys.exec_prefix]}))\n"
)


@functools.cache
def bwrap_problem() -> str | None:
    """Why the sandbox cannot run here (None when ``bwrap`` works), asked once per process."""
    binary = shutil.which("bwrap")
    if binary is None:
        return "bubblewrap is not installed ('apt-get install bubblewrap')"
    probe = [binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--unshare-net", "--unshare-pid", "--die-with-parent", "true"]  # fmt: skip
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not run ({exc})"
    if done.returncode != 0:
        return f"bwrap cannot create namespaces here ({done.stderr.strip() or done.returncode})"
    return None


@dataclass(frozen=True)
class Cover:
    """A folder kept from the kernels: in the sandbox, a decoy holding ``names`` (stand-ins).

    The grader watches the decoy: reading a stand-in (hidden checks) or writing one (the
    reports, ``writable``) is an attempt it reports.
    """

    folder: Path
    names: tuple[str, ...]
    what: str  # the attempt, as the report says it: "read the hidden checks"
    writable: bool = False


@dataclass(frozen=True)
class KernelPlace:
    """One kernel's directories and how to start it: ``prefix`` goes before its command."""

    work: Path
    ipc: Path
    private: Path
    env: Mapping[str, str]
    prefix: tuple[str, ...]
    decoys: tuple[tuple[Path, Cover], ...] = ()  # each decoy folder, watched by the grader


@dataclass
class Isolation:
    """How every kernel of a grading run is isolated; ``place`` lays out one kernel."""

    sandbox: bool
    why: str  # what the report says: which isolation, and why
    bytecode: dict[str, bytes] = field(default_factory=dict)
    readable: tuple[Path, ...] = ()  # bound read-only into the sandbox
    covered: tuple[Cover, ...] = ()  # kept from the kernels

    @property
    def label(self) -> str:
        return "bwrap" if self.sandbox else "none"

    def place(self, tmp: Path, marker: str) -> KernelPlace:
        """Lay out ``tmp`` for one kernel: work/, ipc/, private/ (home, bytecode, /tmp)."""
        work, ipc, private = tmp / "work", tmp / "ipc", tmp / "private"
        ipc.mkdir(mode=0o700)
        cache = private / "pycache"
        for sub in ("home", "ipython", "jupyter", "tmp"):
            (private / sub).mkdir(parents=True)
        for relative, data in self.bytecode.items():  # this kernel's own copy
            target = cache / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        env = dict(os.environ)
        for key in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE"):
            env.pop(key, None)
        env.update({
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(cache),
            "PYTHONNOUSERSITE": "1", "HOME": str(private / "home"),
            "IPYTHONDIR": str(private / "ipython"), "JUPYTER_CONFIG_DIR": str(private / "jupyter"),
            "MPLCONFIGDIR": str(private / "tmp"), "TMPDIR": str(private / "tmp"), MARK: marker,
        })  # fmt: skip
        decoys: tuple[tuple[Path, Cover], ...] = ()
        prefix: tuple[str, ...] = ()
        if self.sandbox:
            prefix, decoys = self._bwrap(tmp, work, ipc, private)
        return KernelPlace(work, ipc, private, env, prefix, decoys)

    def _bwrap(
        self, tmp: Path, work: Path, ipc: Path, private: Path
    ) -> tuple[tuple[str, ...], tuple[tuple[Path, Cover], ...]]:
        args = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--unshare-pid",
                "--unshare-net", "--unshare-ipc", "--unshare-uts"]  # fmt: skip
        for path in _SYSTEM:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        decoys: list[tuple[Path, Cover]] = []
        outer: list[tuple[int, list[str]]] = []  # covers readable paths are bound on top of
        inner: list[tuple[int, list[str]]] = []  # covers inside a readable path: after it
        for number, cover in enumerate(self.covered):
            if _system(cover.folder) or any(cover.folder in Path(s).parents for s in _SYSTEM):
                continue  # never hide the system; a file there is not graded anyway
            decoy = tmp / "covers" / str(number)
            decoy.mkdir(parents=True)
            for name in cover.names:
                (decoy / name).write_text("" if cover.writable else "# hidden while grading\n")
            inside = [other.folder for other in self.covered]
            for path in (*self.readable, *inside, work, ipc, private):  # mount points, made now
                if cover.folder in path.parents:
                    (decoy / path.relative_to(cover.folder)).mkdir(parents=True, exist_ok=True)
            decoys.append((decoy, cover))
            inside = any(path in cover.folder.parents for path in self.readable)
            bind = ["--bind" if cover.writable else "--ro-bind", str(decoy), str(cover.folder)]
            (inner if inside else outer).append((len(cover.folder.parts), bind))
        for _, bind in sorted(outer, key=lambda item: item[0]):
            args += bind
        for path in self.readable:
            args += ["--ro-bind", str(path), str(path)]
        for _, bind in sorted(inner, key=lambda item: item[0]):
            args += bind
        for path in (work, ipc, private):
            args += ["--bind", str(path), str(path)]
        # ipykernel exits when its parent looks like init (pid 1, as bwrap's is): it must not
        # poll; --die-with-parent ends the kernel with the grader instead
        args += ["--unsetenv", "JPY_PARENT_PID", "--chdir", str(work), "--"]
        return tuple(args), tuple(decoys)


def _bytecode(env: Mapping[str, str], cache: Path) -> tuple[dict[str, bytes], dict]:
    """Compile what every kernel imports into ``cache``, once: its files, and the kernel's paths."""
    env = {**env, "PYTHONPYCACHEPREFIX": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run([sys.executable, "-c", _WARM], env=env, capture_output=True,
                          text=True, timeout=300, cwd=cache)  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GradingError(f"helixlab could not be imported to prepare the kernels: {last}")
    found = {str(p.relative_to(cache)): p.read_bytes() for p in cache.rglob("*.pyc")}
    return found, json.loads(done.stdout.strip().splitlines()[-1])


def choose(mode: str) -> tuple[bool, str]:
    """Whether ``--sandbox mode`` runs kernels under bwrap here, and the report's words for it.

    ``on`` where bubblewrap cannot run is a GradingError naming why; ``auto`` says why not.
    """
    if mode not in MODES:
        raise GradingError(f"--sandbox {mode!r} is not one of {', '.join(MODES)}.")
    problem = bwrap_problem() if mode != "off" else None
    if mode == "on" and problem:
        raise GradingError(f"--sandbox on: {problem}.")
    if mode != "off" and problem is None:
        return True, "bwrap (read-only system and helixlab, no network, own PIDs, private files)"
    if mode == "off":
        return False, "none (--sandbox off): kernels run with your permissions"
    return False, f"none ({problem}): kernels run with your permissions"


_WARMED: dict[str, tuple[dict[str, bytes], dict]] = {}


def _warm(scratch: Path) -> tuple[dict[str, bytes], dict]:
    """The bytecode and paths of ``_bytecode``, compiled once per version of the sources."""
    from ._integrity import package_digests

    key = json.dumps([sys.executable, sorted(package_digests(py_only=True).items())])
    if key not in _WARMED:
        cache = scratch / "bytecode"
        cache.mkdir()
        _WARMED.clear()
        _WARMED[key] = _bytecode(os.environ, cache)
    return _WARMED[key]


def prepare(mode: str, covered: Iterable[Cover], scratch: Path) -> Isolation:
    """The isolation of a run for ``--sandbox mode``; ``covered``: folders kept from kernels.

    ``on`` where bubblewrap cannot run is a GradingError naming why; ``auto`` then says so
    in the report and runs without it.
    """
    sandbox, why = choose(mode)
    bytecode, paths = _warm(scratch)
    import helixlab

    package = Path(helixlab.__file__).resolve().parent
    entries = [Path(p).resolve() for p in (*paths["path"], *paths["prefixes"]) if p]
    entries += [package, Path(sys.executable).resolve().parent]
    readable = _outermost(p for p in entries if p.exists() and not _system(p))
    return Isolation(sandbox, why, bytecode, readable, tuple(covered))


def _system(path: Path) -> bool:
    return any(path == Path(s) or Path(s) in path.parents for s in _SYSTEM)


def _outermost(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The paths without those inside another one (bound already), shortest first."""
    unique = sorted(set(paths), key=lambda p: (len(p.parts), str(p)))
    kept: list[Path] = []
    for path in unique:
        if not any(parent in path.parents for parent in kept):
            kept.append(path)
    return tuple(kept)
