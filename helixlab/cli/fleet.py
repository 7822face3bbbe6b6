"""``helixlab fleet status | reload NAME | configure NAME key=value ...``: the whole fleet.

The command lives with the fleet (helixlab/fleet/_cli.py); this module registers it.
"""

from __future__ import annotations

from ..fleet._cli import register

__all__ = ["register"]
