"""The benchmarks still measure what they say: each one's path runs, small, on today's API.

No timing is asserted (speed is measured in ``benchmarks/``, not in tests); what is checked
is that the path each figure stands for is really taken, so that a change of the API
cannot leave a benchmark broken until the next ``make bench``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_graph, bench_reload


@pytest.mark.parametrize("kind", ["no-op", "plain", "async"])
@pytest.mark.parametrize("shape", ["chain", "tree"])
def test_the_reload_benchmark_reloads_every_plugin_of_each_kind(kind, shape):
    row = bench_reload.cascade(12, shape, kind, runs=1)  # asserts the cascade had all 12
    assert row["name"] == f"{kind} plugins, {shape} of 12"
    assert row["direct_per_plugin"] > 0 and row["wall_per_plugin"] > 0
    assert (row["target"] is None) == (kind == "no-op")


def test_the_reload_benchmark_methods_are_the_users_plain_and_async_defs():
    import inspect

    plain = bench_reload.plugin_class("p", kind="plain")
    asynchronous = bench_reload.plugin_class("p", kind="async")
    assert not inspect.iscoroutinefunction(plain.start)
    assert inspect.iscoroutinefunction(asynchronous.start)


def test_the_graph_benchmark_goes_through_a_changed_registry_each_run():
    row = bench_graph.public(60, 150, repeats=2)
    assert row["seconds"] > 0 and row["graphlib_seconds"] > 0
