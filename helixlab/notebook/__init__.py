"""The notebook layer: ``%helix`` magics, ``%%helix`` cells, widgets and rich displays.

``%load_ext helixlab`` gives the notebook one kernel, bound to ``helix``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

_SESSIONS: dict[int, Any] = {}


def load_ipython_extension(shell: Any) -> None:
    from ._magics import HelixMagics, complete
    from ._session import Session

    if id(shell) in _SESSIONS:
        return
    session = Session(shell)
    _SESSIONS[id(shell)] = session
    shell.register_magics(HelixMagics(shell, session))
    shell.set_hook(
        "complete_command", lambda _self, event: complete(session, event), str_key="%helix"
    )
    shell.set_hook(
        "complete_command", lambda _self, event: complete(session, event), str_key="%%helix"
    )
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


def session_of(shell: Any) -> Any:
    """The helixlab session of an IPython shell (after ``%load_ext helixlab``)."""
    return _SESSIONS.get(id(shell))
