"""The gateway as a fleet: many worker processes (and hosts) on one Redis, reloading as one.

``helixlab serve CONFIG --workers N [--redis URL]`` runs a :class:`Supervisor`; each worker
(``_worker``) is one Kernel and gateway; ``_coordinator`` proposes generation g+1 and
commits it only when every live worker prepared it. See docs/architecture.md.
"""

from ._coordinator import FleetReport, live_workers, propose
from ._generation import Generation
from ._redis import Keys, PrivateRedis
from ._supervisor import Supervisor

__all__ = [
    "FleetReport",
    "Generation",
    "Keys",
    "PrivateRedis",
    "Supervisor",
    "live_workers",
    "propose",
]
