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
    rows = bench_graph.public(60, 150, repeats=2)
    assert [row["name"].rsplit(", ", 1)[1] for row in rows] == ["graph changed", "config changed"]
    for row in rows:
        assert row["seconds"] > 0 and row["graphlib_seconds"] > 0


def _server(cpu_us: float, rps: float, errors: int = 0):
    """A peers.Server whose blocks are made up: ``cpu_us`` per request, ``rps``."""
    from benchmarks import peers

    server = peers.Server(proc=None, url="http://127.0.0.1:1", headers={})
    for key in ("sequential", "json16", "json64", "stream16"):
        count = 400
        failed = errors if key == "stream16" else 0
        result = {"count": count, "elapsed": count / rps, "errors": failed,
                  "statuses": [500] if failed else [], "median_ms": 1.0, "p99_ms": 2.0}  # fmt: skip
        unit = peers.STREAM_CHUNKS if key == "stream16" else 1
        server.add(key, result, cpu_us * 1e-6 * count * unit)
    server.totals["peak_rss_mb"] = {"value": 50.0}
    return server


def test_the_peers_table_shows_every_peer_and_a_failing_stream_as_its_status_codes():
    """make bench-peers: Portkey's streams answered 500 here; its row says so, the ratios
    that need it say why they are missing, and the others are computed and judged."""
    from benchmarks import peers

    servers = {
        "upstream alone": _server(10, 10_000),
        "pass-through": _server(1300, 400),
        "helixlab": _server(1000, 500),
        "helixlab + auth": _server(1200, 450),
        "Portkey": _server(2000, 300, errors=400),
        "LiteLLM": _server(13000, 20),
    }
    text = peers.report(servers, {"helixlab": "test"})
    assert "| measurement | pass-through | helixlab | helixlab + auth | Portkey | LiteLLM |" in text
    assert (
        "| streamed CPU per chunk, 16 clients (µs) | 1300 | 1000 | 1200 | 400/400 answered [500]"
        in text
    )
    assert "| helixlab / Portkey, CPU per request, 16 clients | 0.50x | <= 0.6x | yes |" in text
    assert "| helixlab / Portkey, throughput, 64 clients | 1.67x | >= 1.3x | yes |" in text
    assert (
        "| helixlab / Portkey, streamed CPU per chunk | Portkey: 400/400 answered [500] |" in text
    )
    assert "CPU per request, 16 clients | 0.77x | <= 1.3x | yes |" in text  # vs pass-through
    assert "| LiteLLM / helixlab + auth, CPU per request, 16 clients | 10.83x | (kept) |" in text
