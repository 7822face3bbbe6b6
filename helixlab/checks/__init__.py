"""Lab self-checks behind ``%helix check LAB``.

A check probes behaviour (sends requests, performs reloads, reads states and outputs),
never source text. Each lab module registers its checks with :func:`lab`; a check
returns normally to pass, or raises :class:`Missing` with a hint saying what is missing
and where to look.
"""

from __future__ import annotations

from ._core import LABS, CheckReport, CheckResult, Missing, Probe, lab, run_check

__all__ = ["LABS", "CheckReport", "CheckResult", "Missing", "Probe", "lab", "run_check"]
