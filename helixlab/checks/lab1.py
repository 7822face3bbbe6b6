"""Lab 1 — a logging plugin with validated configuration: the checks behind ``%helix check lab1``.

What the lab asks for (see ``labs/lab1_basic_plugin.ipynb``): a plugin named ``my-logger``
whose config model has ``level`` (debug, info, warning or error; default info) and
``format`` (text or json; default text), and whose ``log(level, message)`` method appends
one line per kept message to the list ``self.lines``.

How the checks work, so you can read them and trust them: the first and last look at the
notebook's own kernel (``helix``). The others take the ``my-logger`` class that ``helix``
has registered and load it into a fresh, private :class:`~helixlab.Kernel`, then use it
there: configure it, call ``log`` and read ``lines``. Your notebook's plugin is never
reconfigured or reloaded by a check, and the checks never read your source code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import ConfigError, describe
from ..kernel import Kernel, Plugin, PluginState, Timeouts
from . import _probes
from ._core import Missing, Probe, lab

__all__ = ["NAME"]

NAME = "my-logger"
LEVELS = ("debug", "info", "warning", "error")

#: Short, so that a plugin that hangs fails its check quickly instead of blocking the cell.
TIMEOUTS = Timeouts(init=5, start=5, stop=5, health=2, export_state=5, import_state=5, drain=5)

check = lab("lab1", "a logging plugin with validated configuration", plugins=(NAME,))


@contextlib.contextmanager
def _scratch(probe: Probe, config: dict[str, Any] | None = None) -> Iterator[Kernel]:
    """A private kernel running the learner's ``my-logger`` class, configured with ``config``."""
    with _probes.private_kernel(TIMEOUTS, _probes.registered(probe, NAME)) as kernel:
        report = kernel.load_all()
        if NAME in report.failed:
            failure = report.failed[NAME]
            cause = getattr(failure, "cause", None) or failure.__cause__
            for exc in (failure, cause):
                if isinstance(exc, ConfigError) and exc.problems:
                    raise _probes.empty_config(NAME, exc)
            raise Missing(
                f"a fresh {NAME} with the default config did not start: "
                f"{describe(report.failed[NAME])}. Look at init() and start()."
            )
        if config:
            _configure(kernel, config)
        yield kernel


def _configure(kernel: Kernel, config: dict[str, Any]) -> None:
    try:
        kernel.configure(NAME, config)
    except ConfigError as exc:
        raise Missing(_refusal(config, exc)) from None


def _unknown(exc: ConfigError) -> list[str]:
    """The keys a ConfigError calls unknown: fields the config model does not declare."""
    return [p.path.rpartition(".")[2] for p in exc.problems if p.message.startswith("unknown key")]


def _refusal(config: dict[str, Any], exc: ConfigError) -> str:
    unknown = _unknown(exc)
    if unknown:
        fields = " and ".join(f"`{key}`" for key in unknown)
        what = "the field, with its default" if len(unknown) == 1 else "them, with defaults"
        return f"MyLoggerConfig has no {fields} yet: declare {what} (step 2)."
    problems = "; ".join(p.message.rstrip(".") for p in exc.problems)
    return f"the config {config} was refused: {problems}. See MyLoggerConfig (step 2)."


def _log(plugin: Plugin, level: str, message: str) -> None:
    log = getattr(plugin, "log", None)
    if not callable(log):
        raise Missing(f"{NAME} has no method log(level, message): step 3.")
    try:
        log(level, message)
    except Exception as exc:
        raise Missing(
            f"log({level!r}, {message!r}) raised {describe(exc)}; look at your log() in step 3."
        ) from None


def _count(n: int, noun: str) -> str:
    """'no line was', 'one line was', '3 lines were'."""
    if n == 0:
        return f"no {noun} was"
    return f"one {noun} was" if n == 1 else f"{n} {noun}s were"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _lines(plugin: Plugin) -> list[str]:
    lines = getattr(plugin, "lines", None)
    if not isinstance(lines, list):
        raise Missing(
            f"{NAME} keeps its output in `self.lines`, a list created in init(); found "
            f"{type(lines).__name__}."
        )
    return lines


def _logged(kernel: Kernel, messages: Iterable[tuple[str, str]]) -> list[str]:
    """Log each ``(level, message)`` with the running plugin; the lines it recorded for them."""
    plugin = kernel.get(NAME)
    start = len(_lines(plugin))
    for level, message in messages:
        _log(plugin, level, message)
    return _lines(plugin)[start:]


@check(f"{NAME} is registered and active in helix")
def registered_and_active(probe: Probe) -> None:
    _probes.require_active(probe, NAME)


@check("its config accepts level: warning and format: json")
def config_accepts_good_values(probe: Probe) -> None:
    with _scratch(probe, {"level": "warning", "format": "json"}) as kernel:
        config = kernel.entry(NAME).config
        seen = {key: getattr(config, key, None) for key in ("level", "format")}
        if seen != {"level": "warning", "format": "json"}:
            raise Missing(
                f"after configuring level=warning, format=json the plugin's config holds "
                f"{seen}; declare `level` and `format` as fields of MyLoggerConfig (step 2)."
            )


@check("a bad level is refused by helix.configure(...) with ConfigError; the old config stays")
def bad_level_refused(probe: Probe) -> None:
    with _scratch(probe) as kernel:
        before = kernel.get(NAME)
        old_config = kernel.entry(NAME).config
        try:
            kernel.configure(NAME, {"level": "verbose"})
        except ConfigError as exc:
            if _unknown(exc):
                raise Missing(_refusal({"level": "verbose"}, exc)) from None
        else:
            raise Missing(
                "helix.configure('my-logger', {'level': 'verbose'}) was accepted: MyLoggerConfig "
                "must refuse a level other than debug, info, warning or error (a Literal type, "
                "or a @field_validator that raises ValueError): step 2."
            )
        if kernel.get(NAME) is not before or kernel.state(NAME) != PluginState.ACTIVE:
            raise Missing(
                "after the refused configure the running instance changed or stopped; a refused "
                "config must leave the old instance serving."
            )
        if kernel.entry(NAME).config != old_config:
            raise Missing("after the refused configure the plugin's config changed.")


def _defaults(kernel: Kernel) -> None:
    """The config a fresh my-logger starts with is level info, format text, and valid.

    pydantic does not validate defaults: ``level: Literal[...] = "INFO"`` starts with a
    level that no configure could set, and that log() then fails on.
    """
    config = kernel.entry(NAME).config
    absent = [f"`{key}`" for key in ("level", "format") if not hasattr(config, key)]
    if absent:
        what = "the field, with its default" if len(absent) == 1 else "them, with defaults"
        raise Missing(f"MyLoggerConfig has no {' and '.join(absent)} yet: declare {what} (step 2).")
    seen = {key: getattr(config, key, None) for key in ("level", "format")}
    if seen != {"level": "info", "format": "text"}:
        raise Missing(
            f"a fresh {NAME} starts with {seen}; the defaults must be level 'info' and format "
            f"'text', spelt as the values MyLoggerConfig accepts (step 2)."
        )
    try:
        type(config).model_validate(config.model_dump())
    except Exception as exc:
        raise Missing(
            f"MyLoggerConfig's own defaults are refused by it: {describe(exc)}; give each "
            f"field a default that is one of its allowed values (step 2)."
        ) from None


@check("with the default config, debug is dropped and info, warning and error are recorded")
def level_filtering(probe: Probe) -> None:
    with _scratch(probe) as kernel:  # no configure: what a fresh my-logger starts with
        _defaults(kernel)
        new = _logged(kernel, [(level, f"a {level} message") for level in LEVELS])
        kept = [level for level in LEVELS if any(f"a {level} message" in str(x) for x in new)]
        if kept != ["info", "warning", "error"]:
            recorded = (
                f"only the {_and(kept)} message{'s were' if len(kept) > 1 else ' was'} recorded"
                if kept and set(kept) < {"info", "warning", "error"}
                else f"the {_and(kept)} messages were recorded"
                if kept
                else "none of them was recorded"
            )
            raise Missing(
                f"one message at each level was logged with the default config (level "
                f"info), and {recorded}; "
                f"expected info, warning and error. In log(), compare LEVELS.index(level) with "
                f"LEVELS.index(self.config.level) and append to self.lines (step 3)."
            )
        _configure(kernel, {"level": "error"})
        if _logged(kernel, [("warning", "a quiet warning")]):
            raise Missing("at level error, a warning was still recorded; see log() in step 3.")


@check("format json records one parseable JSON object per message, with level and message")
def json_lines(probe: Probe) -> None:
    with _scratch(probe, {"level": "debug", "format": "json"}) as kernel:
        messages = [("warning", 'disk "almost" full'), ("debug", "two\nlines")]
        new = _logged(kernel, messages)
        if len(new) != 2:
            raise Missing(
                f"two messages were logged at level debug with format json, and "
                f"{_count(len(new), 'line')} recorded. Append one line per message to "
                f"self.lines (step 3)."
            )
        for line, (level, message) in zip(new, messages, strict=True):
            if not isinstance(line, str) or "\n" in line:
                raise Missing(f"each recorded line must be one line of text; got {line!r}.")
            try:
                data = json.loads(line)
            except ValueError:
                raise Missing(
                    f"{line!r} is not JSON; build a dict and use json.dumps() (step 3)."
                ) from None
            if not isinstance(data, dict) or (data.get("level"), data.get("message")) != (
                level,
                message,
            ):
                raise Missing(
                    f"{line!r} should be a JSON object with "
                    f'"level": {json.dumps(level)} and "message": {json.dumps(message)}.'
                )


@check(f"{NAME} is healthy")
def healthy(probe: Probe) -> None:
    _probes.require_healthy(probe, NAME)
