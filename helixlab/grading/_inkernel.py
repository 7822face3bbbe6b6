"""What the grader runs inside a submission's kernel: sent there as source text, never imported.

The grader reads this file once, in its own process, and sends its text in every grading
cell (``exec`` in a fresh namespace), so a submission that patched ``helixlab.grading``
in its kernel changes nothing here. Each grading cell displays exactly one result bundle
of type :data:`MIME` that carries the nonce the grader wrote into that cell's source; the
grader ignores every other output, so text printed by the submission cannot pose as a
result. The grader also imports this module itself, to load hidden checks the same way.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

MIME = "application/vnd.helixlab.grade+json"
PACKAGE = "helixlab"


def emit(nonce: str, kind: str, **data: Any) -> None:
    """Show one result bundle; the nonce ties it to the grading cell that made it."""
    from IPython.display import display

    display({MIME: {"nonce": nonce, "kind": kind, **data}}, raw=True)


def import_everything() -> list[str]:
    """Import every helixlab module, so that all are fingerprinted before the notebook runs.

    The package is walked by hand, not with ``pkgutil.walk_packages``: that one imports
    every package it walks into, ``helixlab.grading`` included, whose nbformat pulls in
    jsonschema's format checkers (seconds of grammar building in each kernel) for a
    module the kernel never uses.
    """
    import importlib
    import pkgutil

    failed: list[str] = []
    grader = f"{PACKAGE}.grading"  # the grader's own side: never used in the kernel

    def walk(package_name: str) -> None:
        try:
            package = importlib.import_module(package_name)
        except Exception as exc:  # an optional part whose dependency is absent
            failed.append(f"{package_name}: {type(exc).__name__}")
            return
        for info in pkgutil.iter_modules(package.__path__, f"{package_name}."):
            name = info.name
            if name.rpartition(".")[2] == "__main__" or name == grader:
                continue
            if info.ispkg:
                walk(name)
                continue
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}")

    walk(PACKAGE)
    return failed


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(f"{PACKAGE}.")


def _digest(value: Any) -> str:
    """Who a value is: its identity and, for a function, the identity of its code and defaults."""
    if isinstance(value, staticmethod | classmethod):
        return f"{type(value).__name__}({_digest(value.__func__)})"
    if isinstance(value, property):
        return f"property({', '.join(_digest(f) for f in (value.fget, value.fset, value.fdel))})"
    if isinstance(value, types.FunctionType):
        parts = (value, value.__code__, value.__defaults__, value.__kwdefaults__, value.__closure__)
        return "function:" + ":".join(str(id(part)) for part in parts)
    return f"{type(value).__name__}:{id(value)}"


def _code(value: Any) -> bool:
    """Whether a value is code (what a patch replaces), not data that may change as it runs."""
    return callable(value) or isinstance(
        value, types.ModuleType | staticmethod | classmethod | property
    )


def _walk(
    prints: dict[str, str], key: str, value: Any, owner: str, pins: list[Any], constants: bool
) -> None:
    """Fingerprint ``value``; a class defined in ``owner`` also by each of its attributes.

    Data (module globals, class attributes that are not code) counts only when
    ``constants``: in ``helixlab.checks``; elsewhere it changes as helixlab runs (the
    embedded upstream, counters of the notebook layer).
    """
    if not (constants or _code(value)):
        return
    pins.append(value)
    prints[key] = _digest(value)
    if isinstance(value, type) and value.__module__ == owner and key.endswith(value.__qualname__):
        for attr, item in list(vars(value).items()):
            if attr not in ("__dict__", "__weakref__", "__doc__"):
                _walk(prints, f"{key}.{attr}", item, owner, pins, constants)


def fingerprint(pins: list[Any] | None = None) -> dict[str, str]:
    """Every helixlab module, class, function, class attribute and registered check, by identity.

    Data counts only in ``helixlab.checks`` (the checks' constants), see ``_walk``.

    ``pins`` keeps the objects alive, so that a replacement cannot reuse a freed id.
    """
    pins = [] if pins is None else pins
    prints: dict[str, str] = {}
    for name, module in sorted(sys.modules.items()):
        if not _ours(name) or module is None:
            continue
        pins.append(module)
        prints[name] = f"module:{id(module)}"
        constants = name.startswith(f"{PACKAGE}.checks")
        for attr, value in list(vars(module).items()):
            if attr not in ("__builtins__", "__loader__", "__spec__", "__cached__"):
                _walk(prints, f"{name}:{attr}", value, name, pins, constants)
    core = sys.modules.get(f"{PACKAGE}.checks._core")
    for lab_name, entry in sorted(getattr(core, "LABS", {}).items()):
        for index, (description, check) in enumerate(entry.checks):
            pins.append(check)
            prints[f"LABS[{lab_name!r}][{index}]"] = f"{description}|{_digest(check)}"
    return prints


def hidden_checks(lab_name: str, sources: Mapping[str, str]) -> list[tuple[str, Callable]]:
    """Run each hidden-check file's text; the checks it registered for ``lab_name``, in order.

    The files register with ``helixlab.checks.lab`` as the lab modules do; the registry is
    left as it was found, so the public lab keeps only its own checks.
    """
    from helixlab.checks import LABS

    lab_entry(lab_name)
    before = {name: len(entry.checks) for name, entry in LABS.items()}
    found: list[tuple[str, Callable]] = []
    try:
        for filename, source in sources.items():
            module = types.ModuleType(f"helixlab_hidden_checks.{filename.removesuffix('.py')}")
            module.__file__ = filename
            exec(compile(source, filename, "exec"), module.__dict__)
            entry = LABS.get(lab_name)
            if entry is not None:
                found.extend(entry.checks[before.get(lab_name, 0) :])
            _restore(LABS, before)
    finally:
        _restore(LABS, before)
    return found


def lab_entry(lab_name: str) -> Any:
    """The registered lab ``lab_name`` (its module ``helixlab.checks.<lab_name>`` imported)."""
    import importlib

    from helixlab.checks import LABS

    importlib.import_module(f"{PACKAGE}.checks.{lab_name}")
    return LABS[lab_name]


def _restore(labs: dict[str, Any], before: Mapping[str, int]) -> None:
    for name in list(labs):
        if name not in before:
            del labs[name]
        else:
            del labs[name].checks[before[name] :]


#: What ``%helix check`` hands ``run_check`` from the session besides kernel and namespace,
#: when the session keeps it (refused definitions, the cells that defined each plugin, the
#: plugins whose cell's latest run failed).
SESSION_EXTRAS = ("refused", "definitions", "failed")


def _probe_parts() -> tuple[Any, Mapping[str, Any], dict[str, Any]]:
    """The notebook's kernel, namespace and session extras, as ``%helix check`` uses them."""
    from IPython import get_ipython

    from helixlab.notebook import session_of

    shell = get_ipython()
    session = session_of(shell)
    if session is None:  # the notebook never ran %load_ext helixlab: check an empty kernel
        shell.extension_manager.load_extension(PACKAGE)
        session = session_of(shell)
    extras = {key: getattr(session, key) for key in SESSION_EXTRAS if hasattr(session, key)}
    return session.kernel, shell.user_ns, extras


def cap_output(per_cell: int, total: int) -> None:
    """Drop output past ``per_cell`` characters a cell and ``total`` in all, in the kernel.

    ipykernel's streams keep what is written until they send it, and its display publisher
    sends each display: both are capped here (writes cut before they are buffered, displays
    dropped), one character over the cap so that the grader sees the cut. The grader caps
    again on its side, and bounds each message it reads (``_kernel.MAX_MESSAGE``).
    """
    from IPython import get_ipython

    left = {"all": total + 1}
    cells: dict[str, int] = {}

    def room(parent: Any, size: int) -> int:
        key = str((parent or {}).get("msg_id", ""))
        allowed = min(cells.setdefault(key, per_cell + 1), left["all"], size)
        cells[key] -= allowed
        left["all"] -= allowed
        return allowed

    def capped(stream: Any) -> None:
        write = stream.write

        def capped_write(text: str) -> int:
            if not isinstance(text, str):
                return write(text)  # its own TypeError
            allowed = room(getattr(stream, "parent_header", None), len(text))
            if allowed:
                write(text if allowed == len(text) else text[:allowed])
            return len(text)

        stream.write = capped_write

    def each_cell(*_: Any) -> None:
        # IPython wraps each stream's write for the length of a cell (its output history)
        # and puts back, after it, the write it found: the cap goes on top at every cell
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "parent_header"):  # ipykernel's OutStream
                capped(stream)

    def hook(msg: dict[str, Any]) -> dict[str, Any] | None:
        data = msg.get("content", {}).get("data", {})
        if MIME in data:
            return msg
        size = len(repr(data))
        return msg if room(msg.get("parent_header"), size) == size else None

    shell = get_ipython()
    shell.events.register("pre_run_cell", each_cell)
    publisher = getattr(shell, "display_pub", None)
    if hasattr(publisher, "register_hook"):
        publisher.register_hook(hook)


def before_notebook(nonce: str, per_cell: int = 10_000, total: int = 200_000) -> None:
    """The first cell: import helixlab whole and show its fingerprint, before any submitted code."""
    cap_output(per_cell, total)
    failed = import_everything()
    pins: list[Any] = []
    prints = fingerprint(pins)
    sys._helixlab_grading_pins = pins  # type: ignore[attr-defined]
    emit(nonce, "fingerprint", prints=prints, skipped=failed)


def before_checks(nonce: str, lab_name: str, sources: Mapping[str, str]) -> None:
    """After the notebook: the fingerprint again, and the descriptions of the checks to run."""
    prints = fingerprint()
    public = [description for description, _ in lab_entry(lab_name).checks]
    hidden = [description for description, _ in hidden_checks(lab_name, sources)]
    emit(nonce, "setup", prints=prints, public=public, hidden=hidden)


def run_one(nonce: str, lab_name: str, index: int, sources: Mapping[str, str]) -> None:
    """Run check ``index`` (public ones, then hidden) through ``run_check``; show its result."""
    from helixlab.checks import LABS, lab, run_check

    entry = lab_entry(lab_name)
    checks = list(entry.checks) + hidden_checks(lab_name, sources)
    description, check = checks[index]
    single = f"{lab_name} (grading check {index + 1})"
    lab(single, entry.title, getattr(entry, "plugins", ()))(description)(check)
    kernel, namespace, extras = _probe_parts()
    started = time.monotonic()
    try:
        report = run_check(single, kernel, namespace, **extras)
    finally:
        LABS.pop(single, None)
    (result,) = report.results
    seconds = round(time.monotonic() - started, 3)
    emit(nonce, "check", index=index, description=result.description, passed=result.passed,
         hint=result.hint, seconds=seconds)  # fmt: skip


def after_checks(nonce: str) -> None:
    """The last cell: the fingerprint once more, to catch a change made while the checks ran."""
    emit(nonce, "fingerprint", prints=fingerprint())
