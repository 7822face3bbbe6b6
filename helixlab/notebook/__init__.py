"""The notebook layer: ``%helix`` magics, ``%%helix`` cells, widgets and rich displays.

``%load_ext helixlab`` gives the notebook one kernel, bound to ``helix``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "session_of", "unload_ipython_extension"]

_SESSIONS: dict[int, Any] = {}
_HOOKED: set[int] = set()  # shells whose completer hooks are installed (once per shell)


def load_ipython_extension(shell: Any) -> None:
    from IPython.core.error import UsageError  # the shell loading us is IPython's

    from .._extras import needs
    from ..errors import MissingExtraError
    from ..kernel import mask_log_records

    try:
        with needs("lab", "%load_ext helixlab", "ipywidgets"):
            from ._magics import HelixMagics, complete
            from ._session import Session
    except MissingExtraError as exc:  # one line in the notebook, not a traceback
        raise UsageError(str(exc)) from None
    mask_log_records()  # the notebook's log lines (plugins', httpx's) show no secret
    if id(shell) in _SESSIONS:
        return
    session = Session(shell)
    _SESSIONS[id(shell)] = session
    shell.register_magics(HelixMagics(shell, session))
    if id(shell) not in _HOOKED:
        # The hooks look the session up on each call: after %unload_ext / %load_ext they
        # complete from the new kernel, not from the closed one.
        def completer(_self: Any, event: Any) -> list[str]:
            current = _SESSIONS.get(id(shell))
            return complete(current, event) if current is not None else []

        shell.set_hook("complete_command", completer, str_key="%helix")
        shell.set_hook("complete_command", completer, str_key="%%helix")
        _HOOKED.add(id(shell))
    print(
        "helixlab ready: the kernel is `helix`; try `%helix help`, "
        "or define a plugin in a `%%helix plugin` cell."
    )


def unload_ipython_extension(shell: Any) -> None:
    session = _SESSIONS.pop(id(shell), None)
    if session is not None:
        session.close()
        from ._cells import set_autoreload

        set_autoreload(session, False)
        # `%helix` would otherwise still reach the closed kernel (KernelClosedError)
        for kind in ("line", "cell"):
            magics = shell.magics_manager.magics[kind]
            owner = getattr(magics.get("helix"), "__self__", None)
            if getattr(owner, "session", None) is session:
                del magics["helix"]


def session_of(shell: Any) -> Any:
    """The helixlab session of an IPython shell (after ``%load_ext helixlab``)."""
    return _SESSIONS.get(id(shell))
