"""What a fleet keeps private: the Redis URL's password, its state file, its temporary files.

The Redis URL may carry a password (``redis://user:PASSWORD@host``, ``rediss://`` for
TLS, an ACL user before the colon). It reaches a worker through its environment
(``HELIXLAB_REDIS``), never its command line (``ps`` shows every user's); every message
shows it as :func:`public_url` (``redis://user:***@host``). The state file that tells
``helixlab fleet`` which Redis a fleet on this host uses holds the URL, so it is written
0600 in a directory of the user's own, 0700 (:func:`state_dir`), which is refused when it
belongs to someone else or others may enter it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FleetError, FleetRedisError
from ..kernel import SecretBook, mask, secret_values

__all__ = [
    "REDIS_VARIABLE",
    "mask_values",
    "public_url",
    "redis_failure",
    "state_dir",
    "state_file",
    "write_private",
]

REDIS_VARIABLE = "HELIXLAB_REDIS"  # the Redis URL, for a worker and for `helixlab fleet`

#: no values of its own: masking with it applies the kernel's credential patterns only
_PATTERNS_ONLY = SecretBook()


def public_url(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***`` (the user stays):
    the kernel's one masking step, with no secret values of its own."""
    return str(mask(text, _PATTERNS_ONLY))


def redis_failure(exc: BaseException, url: str) -> FleetRedisError | None:
    """The documented error for a failure of the fleet's Redis (``exc`` from redis-py, or
    a socket's OSError / TimeoutError), or None when ``exc`` is something else.

    redis-py's ConnectionError and TimeoutError are not Python's: both kinds count.
    """
    import redis

    shown = public_url(url)
    text = public_url(f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__)
    if isinstance(exc, redis.AuthenticationError | redis.AuthenticationWrongNumberOfArgsError):
        return FleetRedisError(
            f"The fleet's Redis at {shown} refused the credentials ({text}): check the user "
            f"and password in the URL (redis://USER:PASSWORD@HOST:PORT).",
            url=shown,
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError | TimeoutError):
        return FleetRedisError(
            f"The fleet's Redis at {shown} cannot be reached ({text}); is it running, and is "
            f"the URL right (--redis, $HELIXLAB_REDIS)?",
            url=shown,
        )
    if isinstance(exc, redis.RedisError):
        return FleetRedisError(
            f"The fleet's Redis at {shown} refused a command ({text}): out of memory, a "
            f"read-only replica, or a user without the permission.",
            url=shown,
        )
    return None


def mask_values(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with the secret ones of ``values`` (by name, as the kernel's rule says:
    ``api_key``, ``password``, ``*_token``...) replaced by ``***``, and URL passwords: the
    kernel's one masking step, with these values."""
    return str(mask(text, SecretBook(secret_values(dict(values)))))


def state_dir() -> Path:
    """This user's private directory for fleet state: created 0700, refused if not ours."""
    path = Path(tempfile.gettempdir()) / f"helixlab-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise FleetError(
            f"{path} is not a directory of user {os.getuid()}'s own; remove it (a fleet "
            f"keeps its Redis URL there, readable by its owner only)."
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours, but others could enter it: close it first
    return path


def state_file(fleet: str) -> Path:
    """Where a running fleet on this host says which Redis it uses (for ``helixlab fleet``)."""
    return state_dir() / f"fleet-{fleet}.json"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as a 0600 file, atomically (never readable by others,
    not even for a moment)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
