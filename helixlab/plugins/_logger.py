"""``custom-logger``: the course's first plugin, a structured logger other plugins log through.

.. code-block:: yaml

    custom-logger:
      config:
        log_level: debug        # debug | info | warning | error (any case)
        format: json            # text | json
        output: memory          # stdout (default) | stderr | memory | a file path
        memory_lines: 500       # how many lines "memory" keeps

Other plugins declare ``custom-logger`` as a dependency and call
``ctx.get("custom-logger").log("info", "message", key=value)``. Fields whose names look
secret (``api_key``, ``token``, ``authorization``...) are written as ``***``.

``stdout`` is the course's behaviour. Lab notebooks use ``output: memory`` instead and read
``.lines``: the kernel runs plugins on a background thread, and output printed from there
lands in whichever notebook cell happens to be running.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, field_validator

from helixlab.kernel import Context, Plugin, PluginConfig, redact

__all__ = ["LEVELS", "CustomLogger", "CustomLoggerConfig"]

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_ALIASES = {"warn": "warning", "err": "error"}


class CustomLoggerConfig(PluginConfig):
    """Where log lines go, in which format, from which level up."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    output: str = Field(default="stdout", min_length=1)
    memory_lines: int = Field(default=1000, ge=1, le=1_000_000)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _ALIASES.get(value, value)
        return value


class CustomLogger(Plugin):
    """Structured logging for the other plugins: level filter, text or JSON, output target."""

    name = "custom-logger"
    version = "1.0.0"
    description = "Structured logging (text or JSON) to stdout, stderr, memory or a file"
    config_model = CustomLoggerConfig

    def __init__(self) -> None:
        self.config = CustomLoggerConfig()
        self._lines: deque[str] = deque(maxlen=self.config.memory_lines)
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def init(self, ctx: Context, config: CustomLoggerConfig) -> None:
        self.config = config
        self._lines = deque(maxlen=config.memory_lines)

    def start(self, ctx: Context) -> None:
        if self.config.output not in ("stdout", "stderr", "memory"):
            path = Path(self.config.output).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8", buffering=1)
        self.log("info", "Custom logger plugin started", plugin=self.name)

    def stop(self, ctx: Context) -> None:
        self.log("info", "Custom logger plugin stopped", plugin=self.name)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def health_check(self, ctx: Context) -> str | None:
        is_file = self.config.output not in ("stdout", "stderr", "memory")
        if is_file and (self._file is None or self._file.closed):
            return f"log file {self.config.output!r} is not open"
        return None

    # -- the API other plugins use -------------------------------------------------------

    @property
    def lines(self) -> list[str]:
        """The most recent lines (``output: memory`` only), oldest first."""
        with self._lock:
            return list(self._lines)

    def enabled_for(self, level: str) -> bool:
        """Whether a message at ``level`` would be written."""
        return LEVELS.get(level.lower(), 0) >= LEVELS[self.config.log_level]

    def log(self, level: str, message: str, **fields: Any) -> None:
        """Write ``message`` with ``fields`` if ``level`` passes the configured threshold."""
        level = _ALIASES.get(level.lower(), level.lower())
        if level not in LEVELS:
            raise ValueError(f"Unknown log level {level!r}; use one of {', '.join(LEVELS)}.")
        if not self.enabled_for(level):
            return
        line = self.format(level, message, fields)
        with self._lock:
            self._write(line)

    def debug(self, message: str, **fields: Any) -> None:
        self.log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)

    def format(self, level: str, message: str, fields: dict[str, Any]) -> str:
        """One log line: JSON object, or ``time LEVEL message key=value ...``."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        safe = redact(fields)
        if self.config.format == "json":
            record = {"time": now, "level": level, "message": message, **safe}
            return json.dumps(record, default=str, ensure_ascii=False)
        extras = " ".join(f"{key}={_text(value)}" for key, value in safe.items())
        return f"{now} {level.upper():<7} {message}" + (f" {extras}" if extras else "")

    def _write(self, line: str) -> None:
        output = self.config.output
        if output == "memory":
            self._lines.append(line)
        elif output in ("stdout", "stderr"):
            stream = sys.stdout if output == "stdout" else sys.stderr
            stream.write(line + "\n")
            stream.flush()
        elif self._file is not None:
            self._file.write(line + "\n")


def _text(value: Any) -> str:
    if isinstance(value, str) and value and " " not in value and "=" not in value:
        return value
    return json.dumps(value, default=str, ensure_ascii=False)
