"""``builtin-tools``: a calculator and a clock for function-calling labs.

.. code-block:: yaml

    builtin-tools:
      config:
        tools: [calculator, clock]
        max_expression_length: 200
        max_exponent: 100
        timeout: 5s            # a tool call running longer answers the model with an error

``calculator`` evaluates arithmetic (numbers, ``+ - * / // % **``, unary minus,
parentheses) by walking the ``ast`` of the expression: there is no ``eval``, names,
calls and attributes do not exist for it, and the expression length, the exponent and the
size of every intermediate integer are bounded, so ``9**9**9`` is an error, not a hung
worker. ``clock`` tells the current time in ISO 8601, in UTC or at a given offset.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field

from helixlab.kernel import Context, Duration, PluginConfig, ToolPlugin
from helixlab.llm import Tool

__all__ = ["BuiltinTools", "BuiltinToolsConfig", "calculate", "current_time"]

_MAX_INT_BITS = 4096
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_OFFSET = re.compile(r"^([+-])(\d{1,2})(?::?(\d{2}))?$")


def calculate(expression: str, *, max_length: int = 200, max_exponent: int = 100) -> int | float:
    """The value of an arithmetic expression, or ValueError saying what is not allowed.

    >>> calculate("2 * (3 + 4) ** 2 - -1")
    99
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("The expression is empty.")
    if len(expression) > max_length:
        raise ValueError(f"The expression is longer than {max_length} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"{expression!r} is not an arithmetic expression.") from None

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ValueError(f"Only numbers are allowed, not {node.value!r}.")
            return _checked(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _checked(_UNARY[type(node.op)](walk(node.operand)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow):
                _check_power(left, right, max_exponent)
            try:
                return _checked(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError:
                raise ValueError("Division by zero.") from None
            except OverflowError:
                raise ValueError("The result is too large.") from None
        raise ValueError(
            f"{type(node).__name__} is not allowed; use numbers, + - * / // % ** and parentheses."
        )

    return walk(tree)


def _check_power(base: int | float, exponent: int | float, limit: int) -> None:
    if abs(exponent) > limit:
        raise ValueError(f"Exponents are limited to {limit} in absolute value.")
    whole = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if whole and int(base).bit_length() * exponent > _MAX_INT_BITS:
        raise ValueError("The result is too large.")


def _checked(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ValueError("The result is not a real number.")
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise ValueError("The result is too large.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("The result is too large or not a number.")
    return value


def current_time(utc_offset: str = "+00:00", *, now: datetime | None = None) -> str:
    """The time now in ISO 8601 at ``utc_offset`` (``+02:00``, ``-0530``, ``Z``, ``UTC``).

    >>> current_time("+02:00", now=datetime(2024, 1, 1, 12, tzinfo=UTC))
    '2024-01-01T14:00:00+02:00'
    """
    text = (utc_offset or "").strip()
    if text.upper() in ("", "Z", "UTC", "GMT"):
        zone = UTC
    else:
        match = _OFFSET.match(text)
        if not match:
            raise ValueError(f"utc_offset {utc_offset!r} must look like '+02:00', '-05:30' or 'Z'.")
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        delta = timedelta(hours=hours, minutes=minutes)
        if delta > timedelta(hours=14) or minutes >= 60:
            raise ValueError(f"utc_offset {utc_offset!r} is not a real offset (at most ±14:00).")
        zone = timezone(-delta if sign == "-" else delta)
    moment = (now or datetime.now(UTC)).astimezone(zone)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class BuiltinToolsConfig(PluginConfig):
    """Which tools to offer, and the calculator's limits."""

    tools: list[Literal["calculator", "clock"]] = Field(default=["calculator", "clock"])
    max_expression_length: int = Field(default=200, ge=1, le=10_000)
    max_exponent: int = Field(default=100, ge=1, le=10_000)
    timeout: Duration = Field(default=5.0, gt=0)


class BuiltinTools(ToolPlugin):
    """Offers ``calculator`` and ``clock`` to function-calling models."""

    name = "builtin-tools"
    version = "1.0.0"
    description = "Tools for function calling: a safe calculator and a clock"
    config_model = BuiltinToolsConfig

    def __init__(self) -> None:
        self.config = BuiltinToolsConfig()
        self.tool_timeout = self.config.timeout

    def init(self, ctx: Context, config: BuiltinToolsConfig) -> None:
        self.config = config
        self.tool_timeout = config.timeout  # the gateway's limit on each call

    def get_tools(self) -> list[Tool]:
        config = self.config

        def calculator(expression: str) -> int | float:
            """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses."""
            return calculate(
                expression,
                max_length=config.max_expression_length,
                max_exponent=config.max_exponent,
            )

        def clock(utc_offset: str = "+00:00") -> str:
            """The current date and time in ISO 8601, at a UTC offset such as '+02:00'."""
            return current_time(utc_offset)

        available: dict[str, Callable[..., Any]] = {"calculator": calculator, "clock": clock}
        return [Tool.from_function(available[name]) for name in dict.fromkeys(config.tools)]
