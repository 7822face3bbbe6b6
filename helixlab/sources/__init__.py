"""Where plugin classes come from, and when they changed: plugins directories (units read
once, imported afresh), what a plugin reaches in its cell or file (its fingerprint's parts),
and the file watcher. The kernel runs the classes it is given; ``Kernel.discover``,
``Kernel.watch_files`` and a ``define_file`` change come here (``helixlab.kernel.LAYERS``).
"""

from ._classes import entry_points, plugin_classes
from ._reach import Reach, reaches
from ._units import (
    Sources,
    Unit,
    define_file,
    find,
    import_file,
    import_unit,
    plugin_units,
    unit_for,
)
from ._watcher import FileWatcher, watch_files

__all__ = [
    "FileWatcher",
    "Reach",
    "Sources",
    "Unit",
    "define_file",
    "entry_points",
    "find",
    "import_file",
    "import_unit",
    "plugin_classes",
    "plugin_units",
    "reaches",
    "unit_for",
    "watch_files",
]
