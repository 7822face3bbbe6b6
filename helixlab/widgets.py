"""The live notebook widgets: ``Dashboard``, ``GraphWidget`` and ``EventLogView``."""

from .notebook.widgets import Dashboard, EventLogView, GraphWidget

__all__ = ["Dashboard", "EventLogView", "GraphWidget"]
