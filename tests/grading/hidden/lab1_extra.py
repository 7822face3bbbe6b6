"""Hidden checks for lab 1, in the format ``helixlab grade --checks DIR`` reads.

The same format as ``helixlab/checks/lab1.py``: ``lab(NAME, TITLE)`` gives the decorator,
a check takes a Probe, returns to pass and raises Missing(hint) to fail.
"""

from helixlab import Kernel
from helixlab.checks import Missing, Probe, lab

check = lab("lab1", "a logging plugin with validated configuration")

TEXT = "ünïcode <b>stays</b> & unchanged"


@check("at level warning, a warning is recorded with its text unchanged")
def warning_text_kept(probe: Probe) -> None:
    if "my-logger" not in probe.kernel:
        raise Missing("helix has no my-logger.")
    kernel = Kernel()
    try:
        kernel.register(probe.kernel.plugin_class("my-logger"))
        kernel.load_all()
        try:
            kernel.configure("my-logger", {"level": "warning"})
        except Exception as exc:
            raise Missing(
                f"level: warning was refused ({type(exc).__name__}) <see step 2>"
            ) from None
        plugin = kernel.get("my-logger")
        plugin.log("warning", TEXT)
        if not any(TEXT in str(line) for line in plugin.lines):
            raise Missing(f"the warning {TEXT!r} was not recorded as given.")
    finally:
        kernel.close()


other_lab = lab("lab2", "a provider plugin")


@other_lab("a check of another lab never runs when grading lab 1")
def never_for_lab1(probe: Probe) -> None:
    raise Missing("this lab 2 check ran while grading lab 1")
