"""The fleet key: every generation is signed (HMAC-SHA256), and workers run only what it signed.

A generation carries plugin source code that every worker imports, so whoever can write
the fleet's Redis could otherwise run code on every worker. The key never goes to Redis:
it comes from ``$HELIXLAB_FLEET_KEY``, else the file named by ``$HELIXLAB_FLEET_KEY_FILE``
(readable by its owner only), else the key file a supervisor on this host made for its
fleet (named, not held, in its state file). A supervisor started without a key makes one
(32 random bytes, a 0600 file in a 0700 directory) and hands its path to its workers;
every host of a fleet must be given the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from ..errors import FleetError

__all__ = [
    "KEY_FILE_VARIABLE",
    "KEY_VARIABLE",
    "fleet_key",
    "make_key_file",
    "require_key",
    "sign",
    "sign_commit",
    "verify",
    "verify_commit",
]

KEY_VARIABLE = "HELIXLAB_FLEET_KEY"
KEY_FILE_VARIABLE = "HELIXLAB_FLEET_KEY_FILE"
_HOW = (
    f"set ${KEY_VARIABLE} (or ${KEY_FILE_VARIABLE}, a file only its owner can read) to the "
    f"same secret on every host of the fleet"
)


def _read_key_file(path: str | os.PathLike) -> bytes:
    p = Path(path)
    try:
        mode = p.stat().st_mode
        data = p.read_bytes().strip()
    except OSError as exc:
        raise FleetError(f"The fleet key file {str(p)!r} cannot be read: {exc}.") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FleetError(
            f"The fleet key file {str(p)!r} is readable by others (mode "
            f"{stat.S_IMODE(mode):o}); run 'chmod 600 {p}'."
        )
    if len(data) < 16:
        raise FleetError(f"The fleet key in {str(p)!r} is shorter than 16 bytes.")
    return data


def fleet_key(fleet: str | None = None) -> bytes | None:
    """The fleet key: the environment, else its key file, else the one the local
    supervisor of ``fleet`` made (None when there is none)."""
    if os.environ.get(KEY_VARIABLE):
        return os.environ[KEY_VARIABLE].encode()
    if os.environ.get(KEY_FILE_VARIABLE):
        return _read_key_file(os.environ[KEY_FILE_VARIABLE])
    if fleet is not None:
        from ._private import state_file

        try:
            recorded = json.loads(state_file(fleet).read_text()).get("key_file")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded:
            return _read_key_file(recorded)
    return None


def require_key(fleet: str | None = None) -> bytes:
    key = fleet_key(fleet)
    if key is None:
        raise FleetError(
            f"No fleet key: generations of the fleet {fleet or 'helixlab'!r} are signed, "
            f"and this process has no key to sign with; {_HOW}."
        )
    return key


def make_key_file(directory: Path | None = None) -> Path:
    """A new random key in a 0600 file in ``directory`` (0700), else a new 0700 directory
    (for a supervisor: its private run directory, removed with it even after a kill -9)."""
    directory = directory or Path(tempfile.mkdtemp(prefix="helixlab-fleet-key-"))
    path = directory / "fleet.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def _canonical(fleet: str, fields: dict[str, Any]) -> bytes:
    return json.dumps([fleet, fields], sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, fleet: str, fields: dict[str, Any]) -> str:
    """HMAC-SHA256 of a generation's ``fields`` (its identity and content) for ``fleet``."""
    return hmac.new(key, _canonical(fleet, fields), hashlib.sha256).hexdigest()


def verify(key: bytes, fleet: str, fields: dict[str, Any], signature: str | None) -> str | None:
    """None when ``signature`` is the key's; else why the generation is refused."""
    if not signature:
        return "it is not signed"
    if not hmac.compare_digest(sign(key, fleet, fields), signature):
        return f"its signature is not this fleet's key's (a write to Redis, or another key; {_HOW})"
    return None


def _commit_fields(number: int, digest: str) -> dict[str, Any]:
    return {"decision": "commit", "proposal": number, "generation": number, "digest": digest}


def sign_commit(key: bytes, fleet: str, number: int, digest: str) -> str:
    """The proposer's signed decision that the fleet committed proposal ``number`` (its
    content: ``digest``). A generation's own signature proves a key holder proposed it;
    this one proves the fleet committed it: ``committed`` and ``decision:*`` in Redis are
    not signed, so a worker runs nothing as committed without it."""
    return sign(key, fleet, _commit_fields(number, digest))


def verify_commit(
    key: bytes, fleet: str, number: int, digest: str, signature: str | None
) -> str | None:
    """None when ``signature`` is the fleet key's commit decision for generation ``number``
    with content ``digest``; else why it is refused."""
    if not signature:
        return (
            f"Redis names generation {number} committed, but holds no signed commit decision "
            f"for it (an aborted proposal, or a write to Redis)"
        )
    if not hmac.compare_digest(sign_commit(key, fleet, number, digest), signature):
        return (
            f"the commit decision for generation {number} is not signed by this fleet's key "
            f"(a write to Redis, or another key; {_HOW})"
        )
    return None
