"""The optional parts of helixlab and the extra that installs each.

``pip install helixlab`` is the kernel, the gateway and ``helixlab serve``. The rest comes
with an extra (pyproject.toml's ``[project.optional-dependencies]``): ``lab`` (the course in
JupyterLab), ``fleet`` (Redis and Prometheus for ``--workers N``), ``grade`` (``helixlab
grade``). Every import of a package an extra brings goes through ``needs``, so that a
missing one is one line naming the command that installs it::

    with needs("fleet", "the fleet"):
        import redis

    MissingExtraError: the fleet needs the fleet extra (redis is not installed):
    pip install 'helixlab[fleet]'
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from .errors import MissingExtraError

__all__ = ["EXTRAS", "needs", "require"]

# The top-level modules each extra installs (tests/test_packaging.py keeps this in step
# with pyproject.toml). A module missing outside these is a broken install, not a missing
# extra, and is raised as it is.
_FLEET = frozenset({"redis", "prometheus_client"})
EXTRAS: dict[str, frozenset[str]] = {
    "fleet": _FLEET,
    "grade": frozenset({"nbclient", "nbformat", "ipykernel", "IPython", "ipywidgets", "psutil"}),
    "lab": _FLEET
    | {"IPython", "ipykernel", "ipywidgets", "jupyterlab", "nbformat", "nbval", "graphviz"}
    | {"openai"},
}


@contextlib.contextmanager
def needs(extra: str, what: str, *modules: str) -> Iterator[None]:
    """Raise ``MissingExtraError`` for ``what`` if one of ``modules`` (looked for first,
    not imported) or a module imported in the block is one ``extra`` installs and is
    missing; any other missing module is a broken install and is raised as it is."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtraError(what, extra, ", ".join(missing))
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS[extra]:
            raise
        raise MissingExtraError(what, extra, top) from None


def require(extra: str, what: str) -> None:
    """Raise ``MissingExtraError`` for ``what`` unless every module ``extra`` installs is
    there: the check a command makes before it starts anything."""
    with needs(extra, what, *sorted(EXTRAS[extra], key=str.lower)):
        pass
