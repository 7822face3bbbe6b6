"""builtin-tools: the safe calculator and the clock, as tools a model calls."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

import helixlab as hx
from helixlab.plugins._tools import BuiltinToolsConfig, calculate, current_time


@pytest.fixture
def tools(kernel):
    kernel.apply_config({"plugins": {"builtin-tools": {}}})
    kernel.load_all()
    return {tool.name: tool for tool in kernel.get("builtin-tools").get_tools()}


def test_the_plugin_offers_a_calculator_and_a_clock_with_schemas(tools):
    assert sorted(tools) == ["calculator", "clock"]
    calc = tools["calculator"].definition.to_openai()["function"]
    assert calc["parameters"]["required"] == ["expression"]
    assert "arithmetic" in calc["description"]
    assert "required" not in tools["clock"].parameters


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 * (3 + 4) ** 2 - -1", 99),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-3 % 5", 2),
        ("2 ** -1", 0.5),
        ("1_000 * 1.5", 1500.0),
        ("+(4)", 4),
    ],
)
def test_calculator_evaluates_arithmetic_from_a_models_json_arguments(tools, expression, value):
    arguments = json.dumps({"expression": expression})
    assert asyncio.run(tools["calculator"].invoke(arguments)) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo pwned')", "not allowed"),
        ("(1).__class__", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("[1, 2]", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("x + 1", "not allowed"),
        ("'a' * 5", "Only numbers"),
        ("True + 1", "Only numbers"),
        ("1j * 1j", "Only numbers"),
        ("1 / 0", "Division by zero"),
        ("5 % 0", "Division by zero"),
        ("9 ** 9 ** 9", "Exponents are limited"),
        ("2 ** 100 * 99999 ** 99 * 99999 ** 99 * 99999 ** 99", "too large"),
        ("1e308 * 10", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("", "empty"),
        ("1+" * 150 + "1", "longer than 200"),
    ],
)
def test_calculator_refuses_anything_but_bounded_arithmetic(expression, message):
    started = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        calculate(expression)
    assert time.perf_counter() - started < 0.5  # refused, not computed


def test_limits_come_from_the_config(kernel):
    kernel.apply_config(
        {"plugins": {"builtin-tools": {"config": {"max_exponent": 3, "tools": ["calculator"]}}}}
    )
    kernel.load_all()
    (calculator,) = kernel.get("builtin-tools").get_tools()
    assert asyncio.run(calculator.invoke({"expression": "2 ** 3"})) == 8
    with pytest.raises(ValueError, match="limited to 3"):
        asyncio.run(calculator.invoke({"expression": "2 ** 4"}))


def test_clock_tells_utc_now_in_iso_format(tools):
    text = asyncio.run(tools["clock"].invoke({}))
    assert text.endswith("Z")
    moment = datetime.fromisoformat(text)
    assert abs(moment - datetime.now(UTC)) < timedelta(seconds=5)


def test_clock_applies_an_offset():
    noon = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert current_time("+05:30", now=noon) == "2024-06-01T17:30:00+05:30"
    assert current_time("-0800", now=noon) == "2024-06-01T04:00:00-08:00"
    assert current_time("UTC", now=noon) == "2024-06-01T12:00:00Z"
    for bad in ("+25:00", "Europe/Paris", "+05:75"):
        with pytest.raises(ValueError, match="utc_offset"):
            current_time(bad, now=noon)


def test_an_unknown_tool_name_is_a_config_error(kernel):
    with pytest.raises(hx.ConfigError, match=r"config\.tools\.0"):
        kernel.apply_config({"plugins": {"builtin-tools": {"config": {"tools": ["shell"]}}}})


def test_each_config_offers_both_tools_by_default_in_a_list_of_its_own():
    first, second = BuiltinToolsConfig(), BuiltinToolsConfig()
    first.tools.remove("clock")
    assert second.tools == ["calculator", "clock"]
