"""A new class refused because of a value the kernel stored for its plugin, said as such.

A plugin's configuration outlives its class: what ``configure()`` (or a YAML file) set is
validated again by each new definition. When a stricter config model refuses a value
stored earlier (``level: str`` accepted ``'verbose'``; ``Literal[...]`` does not), the new
class is not at fault: the refusal names the stored value, where it was set, and the one
command that clears it.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, ReloadError

__all__ = ["stored_value_refusal"]


def stored_value_refusal(entry: Any, cls: Any, exc: ConfigError) -> ReloadError | None:
    """The refusal of ``cls`` when only values stored in ``entry``'s config block it.

    None when the new class would be refused with its own defaults too (its model is at
    fault, not a stored value), or when a blocked value has no default to go back to.
    """
    spec = entry.spec
    model: Any = getattr(cls, "config_model", None)
    fields = getattr(model, "model_fields", None)
    if not spec.config or model is None or fields is None:
        return None
    blocked: dict[str, Any] = {}
    for problem in exc.problems:
        key = _top_key(problem.path)
        if key is None or key not in spec.config or key not in fields:
            return None
        if fields[key].is_required():
            return None
        blocked[key] = fields[key].get_default(call_default_factory=True)
    try:  # the defaults themselves must be accepted, else the model is at fault
        model.model_validate({k: v for k, v in spec.config.items() if k not in blocked})
    except Exception:
        return None
    name = cls.name
    secret = {path[0] for path in spec.secrets if path}
    values = ", ".join(
        f"{key}={'<secret>' if key in secret else repr(spec.config[key])}" for key in blocked
    )
    reasons = "; ".join(f"{_key_path(p.path)}: {p.message.rstrip('.')}" for p in exc.problems)
    where = "with configure()" if spec.source == "configure()" else f"in {spec.source}"
    clear = f"helix.configure({name!r}, {blocked!r})"
    if spec.source != "configure()":
        fix = f"change it in {spec.source} and apply that file again"
    else:
        fix = f"clear it with {clear} (the new defaults)"
    return ReloadError(
        name,
        "config",
        f"Reload of {name!r} refused: the configuration stored for it earlier ({values}, set "
        f"{where}) does not fit the new {getattr(model, '__name__', 'config model')} "
        f"({reasons}). The new definition itself is fine: {fix}, then run the definition "
        f"again. The running versions are unchanged.",
        cause=exc,
    )


def _top_key(path: str) -> str | None:
    """``config.level`` -> ``level``; None for a path that is not under ``config``."""
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "config":
        return parts[1]
    return parts[0] if len(parts) == 1 and parts[0] else None


def _key_path(path: str) -> str:
    return path.removeprefix("config.")
