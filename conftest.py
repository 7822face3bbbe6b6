"""The whole run: nbval compares SVG as text; bytecode apart from the sources; a /tmp each.

Every Python of the run (pytest and its xdist workers, notebook kernels, subprocesses)
reads and writes bytecode under one ``PYTHONPYCACHEPREFIX``, never in ``__pycache__``
beside helixlab's sources. The grader's tests plant bytecode there on purpose (a
submission's attack) and its integrity check flags bytecode that appears there during a
submission; with the prefix, tests running beside them neither run the planted file nor
write bytecode the grader would blame on a submission.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault(
    "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / f"helixlab-test-pycache-{os.getuid()}")
)
sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]

# Each xdist worker (make test runs several) gets its own temporary folder: what a fleet
# or a server keeps there under a fixed name (a fleet's state file, named by the fleet)
# is then one test's, not whichever test of another worker wrote it last.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    own = Path(tempfile.gettempdir()) / f"hx-{worker}"
    own.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(own)
    tempfile.tempdir = None  # gettempdir() looks again


def pytest_collectstart(collector):
    """nbval: graphviz SVG holds its version and font-dependent coordinates; compare the text."""
    if str(getattr(collector, "path", "")).endswith(".ipynb"):
        collector.skip_compare += ("image/svg+xml",)
