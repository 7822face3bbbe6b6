"""HTML reprs that upper layers register for lower layers' objects.

The kernel and ``errors`` must not import the notebook layer, yet their objects should
draw as HTML in a notebook. So, as IPython's display formatters do with ``for_type``,
the notebook layer registers a renderer per class here (``helixlab.notebook._html`` does
it on import, and ``import helixlab`` imports it); ``_repr_html_`` looks the renderer up
along the class's MRO and answers None (plain text) when there is none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["HtmlRepr", "html_of", "register_html"]

_RENDERERS: dict[type, Callable[[Any], str]] = {}


def register_html(cls: type, render: Callable[[Any], str]) -> None:
    """Draw instances of ``cls`` (and of its subclasses) with ``render(obj) -> html``."""
    _RENDERERS[cls] = render


def html_of(obj: Any) -> str | None:
    """The registered HTML of ``obj``, or None."""
    for klass in type(obj).__mro__:
        render = _RENDERERS.get(klass)
        if render is not None:
            return render(obj)
    return None


class HtmlRepr:
    """Mixin: ``_repr_html_`` from the registered renderer (None: IPython shows text)."""

    __slots__ = ()

    def _repr_html_(self) -> str | None:
        return html_of(self)
