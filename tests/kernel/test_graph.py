"""Tests for helixlab.kernel._graph: orders, cycles and validation (drawings: tests/notebook)."""

from __future__ import annotations

import graphlib
import heapq
import itertools
import random

import pytest
from _graphs import gateway_graph, node
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from helixlab.errors import (
    CycleError,
    DependencyError,
    DisabledDependencyError,
    MissingDependencyError,
    PluginNotFoundError,
    RegistryError,
    VersionConflictError,
)
from helixlab.kernel._graph import DependencyGraph, Node, find_cycle

# -- factories ---------------------------------------------------------------------


def graph_of(deps: dict[str, list[str]], priority: dict[str, int] | None = None) -> DependencyGraph:
    """A graph of ``name -> dependencies`` (no specifiers), with priorities (missing: 0)."""
    priority = priority or {}
    return DependencyGraph(
        Node(n, priority=priority.get(n, 0), requires=tuple((d, "") for d in ds))
        for n, ds in deps.items()
    )


def load_order(deps: dict[str, list[str]], priority: dict[str, int] | None = None) -> list[str]:
    return graph_of(deps, priority).load_order()


def reload_order(deps, names, priority=None) -> list[str]:
    """The graph's reload order of the ``names`` it knows."""
    names = [names] if isinstance(names, str) else [n for n in names if n in deps]
    return graph_of(deps, priority).reload_order(names)


NAMES = [f"p{i}" for i in range(12)]


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, int]]:
    """A random DAG (edges only from later to earlier in a hidden order) and priorities."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        deps[name] = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
    priority = {n: draw(st.integers(-2, 2)) for n in names}
    return deps, priority


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    """A random graph with at least one planted cycle (possibly a self-loop)."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1, max_size=len(NAMES)))
    deps = {n: draw(st.lists(st.sampled_from(names), unique=True, max_size=4)) for n in names}
    ring = draw(st.lists(st.sampled_from(names), unique=True, min_size=1))
    for a, b in zip(ring, [*ring[1:], ring[0]]):
        if b not in deps[a]:
            deps[a].append(b)
    return deps


def shuffled(deps: dict[str, list[str]], seed: int) -> dict[str, list[str]]:
    """The same graph with keys and dependency lists in another order."""
    rng = random.Random(seed)
    keys = list(deps)
    rng.shuffle(keys)
    return {k: rng.sample(deps[k], len(deps[k])) for k in keys}


def assert_real_cycle(cycle: list[str], deps: dict[str, list[str]]) -> None:
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1, "a cycle visits each plugin once"
    for a, b in itertools.pairwise(cycle):
        assert b in deps[a], f"{a!r} does not depend on {b!r}"


def closure(edges: dict[str, set[str]], start: set[str]) -> set[str]:
    """Brute-force reachability, as the reference for the fast versions."""
    found = set(start)
    while True:
        more = {b for a in found for b in edges.get(a, ())} - found
        if not more:
            return found
        found |= more


# -- load_order ----------------------------------------------------------------------


@given(dags(), st.integers(0, 2**32))
def test_load_order_puts_dependencies_first_and_ignores_dict_order(dag, seed) -> None:
    deps, priority = dag
    order = load_order(deps, priority)
    assert sorted(order) == sorted(deps)
    position = {name: i for i, name in enumerate(order)}
    for name, ds in deps.items():
        for d in ds:
            assert position[d] < position[name]
    assert load_order(shuffled(deps, seed), dict(reversed(priority.items()))) == order


@given(dags())
def test_load_order_picks_highest_priority_then_name_among_ready(dag) -> None:
    deps, priority = dag
    order = load_order(deps, priority)
    done: set[str] = set()
    for name in order:
        ready = [n for n in deps if n not in done and set(deps[n]) <= done]
        best = min(ready, key=lambda n: (-priority[n], n))
        assert name == best
        done.add(name)


def graphlib_order(deps: dict[str, list[str]], priority: dict[str, int]) -> list[str]:
    """The reference: graphlib's sorter, ready plugins taken by (-priority, name)."""
    sorter = graphlib.TopologicalSorter({n: [d for d in ds if d in deps] for n, ds in deps.items()})
    sorter.prepare()
    ready = [(-priority.get(n, 0), n) for n in sorter.get_ready()]
    heapq.heapify(ready)
    order = []
    while ready:
        order.append(heapq.heappop(ready)[1])
        sorter.done(order[-1])
        for n in sorter.get_ready():
            heapq.heappush(ready, (-priority.get(n, 0), n))
    return order


@given(dags(), st.integers(0, 2**32))
@settings(max_examples=300, deadline=None)  # 300 random graphs, as issue 22 compared
def test_load_order_is_graphlibs_with_a_heap(dag, seed) -> None:
    deps, priority = dag
    assert load_order(shuffled(deps, seed), priority) == graphlib_order(deps, priority)


def test_load_order_ties_go_by_priority_then_name() -> None:
    deps = {"zeta": [], "alpha": [], "mid": [], "late": ["alpha"]}
    assert load_order(deps) == ["alpha", "late", "mid", "zeta"]
    assert load_order(deps, {"zeta": 5, "late": 9}) == ["zeta", "alpha", "late", "mid"]


def test_load_order_ignores_names_outside_the_mapping() -> None:
    assert load_order({"b": ["a", "ghost"], "a": []}) == ["a", "b"]


def test_load_order_handles_a_long_chain_without_recursion() -> None:
    deps = {f"n{i:05d}": [f"n{i + 1:05d}"] for i in range(10_000)}
    deps["n10000"] = []
    assert load_order(deps)[0] == "n10000"
    deps["n10000"] = ["n00000"]
    with pytest.raises(CycleError) as info:
        load_order(deps)
    assert len(info.value.cycle) == 10_002


# -- cycles --------------------------------------------------------------------------


@given(cyclic_graphs())
@settings(max_examples=200)
def test_cycles_reported_are_real(deps) -> None:
    cycle = find_cycle(deps)
    assert cycle is not None
    assert_real_cycle(cycle, deps)
    with pytest.raises(CycleError) as info:
        load_order(deps)
    assert_real_cycle(info.value.cycle, deps)


@given(st.dictionaries(st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES), max_size=3)))
def test_find_cycle_agrees_with_graphlib(deps) -> None:
    try:
        graphlib.TopologicalSorter(
            {k: [d for d in v if d in deps] for k, v in deps.items()}
        ).prepare()
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    assert (find_cycle(deps) is None) == acyclic


@given(cyclic_graphs(), st.integers(0, 2**32))
def test_find_cycle_is_deterministic(deps, seed) -> None:
    assert find_cycle(shuffled(deps, seed)) == find_cycle(deps)


def test_cycle_message_reads_along_the_dependencies() -> None:
    deps = {"b": ["c"], "c": ["a"], "a": ["b"], "d": ["a"]}
    with pytest.raises(CycleError) as info:
        load_order(deps)
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert "a -> b -> c -> a" in str(info.value)
    assert set(info.value.plugins) == {"a", "b", "c"}


def test_self_dependency_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


# -- dependents, dependencies, reload_order ------------------------------------------


@given(dags(), st.sampled_from(NAMES))
def test_dependents_and_dependencies_match_brute_force(dag, name) -> None:
    deps, _ = dag
    assume(name in deps)  # an unknown name is refused (test_graph_names_the_choices_...)
    graph = graph_of(deps)
    forward = {n: set(ds) for n, ds in deps.items()}
    backward = {n: {m for m, ds in deps.items() if n in ds} for n in deps}
    assert set(graph.dependencies(name, transitive=True)) == closure(forward, forward[name])
    assert set(graph.dependents(name, transitive=True)) == closure(backward, backward[name])
    assert set(graph.dependents(name)) == backward[name]
    assert set(graph.dependencies(name)) == forward[name]


@given(dags(), st.lists(st.sampled_from(NAMES), max_size=3))
def test_reload_order_is_targets_plus_dependents_in_load_order(dag, targets) -> None:
    deps, priority = dag
    backward = {n: {m for m, ds in deps.items() if n in ds} for n in deps}
    expected = closure(backward, {t for t in targets if t in deps})
    order = reload_order(deps, targets, priority)
    assert set(order) == expected
    assert order == [n for n in load_order(deps, priority) if n in expected]


@given(dags(), st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), st.booleans())
def test_a_graph_answers_the_same_orders_before_and_after_it_is_validated(
    dag, targets, validated
) -> None:
    deps, priority = dag
    graph = DependencyGraph(
        [
            Node(n, priority=priority[n], requires=tuple((d, "") for d in ds))
            for n, ds in deps.items()
        ]
    )
    if validated:
        graph.validate()
    targets = [t for t in targets if t in deps]
    assert graph.load_order() == load_order(deps, priority)
    if targets:
        assert graph.reload_order(targets) == reload_order(deps, targets, priority)


@given(
    dags(),
    st.integers(0, 11),
    st.integers(1, 3),
    st.booleans(),
    st.booleans(),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=2),
)
def test_a_graph_with_one_node_replaced_answers_as_one_built_anew(
    dag, pick, version, validated, add_edge, targets
) -> None:
    """Every edge asks for version >=2 of its target; the replaced node gets ``version``
    (1 breaks its users), and sometimes one more dependency (a changed structure)."""
    deps, priority = dag
    if not deps:
        return
    nodes = {
        n: Node(n, "2.0", priority=priority[n], requires=tuple((d, ">=2") for d in ds))
        for n, ds in deps.items()
    }
    graph = DependencyGraph(nodes)
    if validated:
        graph.validate()
        graph.reload_order(list(deps)[:1])
    name = list(deps)[pick % len(deps)]
    old = nodes[name]
    extra = tuple((d, "") for d in deps if d != name and add_edge and d not in deps[name])[:1]
    changed = Node(name, f"{version}.0", priority=old.priority, requires=old.requires + extra)
    derived = DependencyGraph({**graph.nodes, name: changed})  # as the registry derives it
    fresh = DependencyGraph({**nodes, name: changed})

    def outcome(g):
        try:
            g.validate()
        except DependencyError as exc:
            return str(exc)
        return None

    assert outcome(derived) == outcome(fresh)
    if outcome(fresh) is None:
        assert derived.load_order() == fresh.load_order()
        targets = [t for t in targets if t in deps]
        if targets:
            assert derived.reload_order(targets) == fresh.reload_order(targets)


def test_reload_order_accepts_one_name_and_ignores_unrelated_cycles() -> None:
    deps = {"log": [], "limit": ["log"], "auth": ["limit"], "x": ["y"], "y": ["x"]}
    assert reload_order(deps, "limit") == ["limit", "auth"]


def test_reload_order_matches_full_order_when_a_dependency_is_outside_the_cascade() -> None:
    # "late" outranks "early" but waits for low-priority "base": the cascade keeps that.
    deps = {"early": [], "base": [], "late": ["base"]}
    priority = {"early": 1, "base": 0, "late": 5}
    assert load_order(deps, priority) == ["early", "base", "late"]
    assert reload_order(deps, ["early", "late"], priority) == ["early", "late"]


# -- DependencyGraph -------------------------------------------------------------------


@pytest.fixture
def gateway() -> DependencyGraph:
    return gateway_graph()


def test_graph_behaves_like_a_collection_of_names(gateway) -> None:
    assert len(gateway) == 5
    assert "auth" in gateway and "nowhere" not in gateway
    assert set(gateway) == {"custom-logger", "rate-limiter", "auth", "metrics", "legacy"}
    assert gateway.nodes["auth"].version == "0.3.0"


def test_graph_refuses_duplicate_names() -> None:
    with pytest.raises(RegistryError, match="'a' appears twice"):
        DependencyGraph([Node("a"), Node("a")])


def test_graph_orders_enabled_plugins_only(gateway) -> None:
    gateway.validate()  # legacy's missing dependency does not matter: legacy is disabled
    assert gateway.load_order() == ["metrics", "custom-logger", "rate-limiter", "auth"]
    assert gateway.reload_order("custom-logger") == ["custom-logger", "rate-limiter", "auth"]
    assert gateway.find_cycle() is None


def test_graph_queries_return_sorted_lists(gateway) -> None:
    assert gateway.dependents("custom-logger") == ["auth", "rate-limiter"]
    assert gateway.dependents("rate-limiter", transitive=True) == ["auth"]
    assert gateway.dependencies("auth") == ["custom-logger", "rate-limiter"]
    assert gateway.dependencies("auth", transitive=True) == ["custom-logger", "rate-limiter"]


def test_graph_names_the_choices_for_unknown_or_disabled_plugins(gateway) -> None:
    with pytest.raises(PluginNotFoundError, match=r"'nope' is registered\. Known plugins: auth"):
        gateway.dependents("nope")
    with pytest.raises(PluginNotFoundError, match="'legacy' is enabled"):
        gateway.reload_order(["legacy"])


def test_validate_reports_every_problem_at_once() -> None:
    graph = DependencyGraph(
        [
            node("custom-logger", "1.0.0"),
            node("rate-limiter", "1.2.0", "custom-logger>=2.0"),
            node("auth", "1.0.0", "custom-loger"),
            node("cache", "1.0.0", enabled=False),
            node("search", "1.0.0", "cache"),
            node("a", "1.0.0", "b"),
            node("b", "1.0.0", "c"),
            node("c", "1.0.0", "a"),
        ]
    )
    with pytest.raises(DependencyError) as info:
        graph.validate()
    err = info.value
    kinds = [type(p) for p in err.problems]
    assert sorted(k.__name__ for k in kinds) == [
        "CycleError",
        "DisabledDependencyError",
        "MissingDependencyError",
        "VersionConflictError",
    ]
    assert set(err.plugins) == {
        "rate-limiter",
        "custom-logger",
        "auth",
        "custom-loger",
        "search",
        "cache",
        "a",
        "b",
        "c",
    }
    text = str(err)
    assert "4 dependency problems" in text
    assert "Plugin 'rate-limiter' needs 'custom-logger>=2.0', but 'custom-logger' is 1.0.0." in text
    assert "'auth' depends on 'custom-loger', which is not registered" in text
    assert "did you mean 'custom-logger'?" in text
    assert "Known plugins: a, auth, b, c, cache, custom-logger" in text
    assert "'search' depends on 'cache', which is disabled" in text
    assert "a -> b -> c -> a" in text
    by_kind = {type(p): p for p in err.problems}
    assert by_kind[MissingDependencyError].plugins == ("auth", "custom-loger")
    assert by_kind[DisabledDependencyError].plugins == ("search", "cache")
    assert by_kind[VersionConflictError].plugins == ("rate-limiter", "custom-logger")
    assert set(by_kind[CycleError].plugins) == {"a", "b", "c"}


def test_validate_raises_the_specific_class_for_a_single_kind_of_problem() -> None:
    graph = DependencyGraph([node("a", "1.0.0", "b"), node("b", "1.0.0", "a"), node("c", "1.0.0")])
    with pytest.raises(CycleError) as info:
        graph.validate()
    assert info.value.cycle == ["a", "b", "a"]
    assert graph.find_cycle() == ["a", "b", "a"]


def test_validate_reports_each_separate_cycle() -> None:
    graph = DependencyGraph(
        [node("a", "1.0", "b"), node("b", "1.0", "a"), node("x", "1.0", "y"), node("y", "1.0", "x")]
    )
    with pytest.raises(CycleError) as info:
        graph.validate()
    assert [p.cycle for p in info.value.problems] == [["a", "b", "a"], ["x", "y", "x"]]


def test_validate_accepts_prereleases_and_rejects_bad_specifiers() -> None:
    DependencyGraph([node("core", "2.0.0rc1"), node("ext", "1.0", "core>=1.0")]).validate()
    bad = DependencyGraph([node("core", "1.0"), Node("ext", requires=(("core", "=>1"),))])
    with pytest.raises(VersionConflictError, match="invalid version specifier '=>1'"):
        bad.validate()


def test_disabled_plugins_may_depend_on_anything() -> None:
    graph = DependencyGraph(
        [node("off", "1.0", "ghost", enabled=False), node("a", "1.0", "off2", enabled=False)]
    )
    graph.validate()
    assert graph.load_order() == []


@given(cyclic_graphs(), st.dictionaries(st.sampled_from(NAMES), st.integers(-2, 2)))
@settings(deadline=None)
def test_display_order_follows_the_rule_then_ranks_what_a_cycle_blocks(deps, priority) -> None:
    """What can start comes first, by the load-order rule; what a cycle blocks comes next,
    higher priority first, then by name (drawings and notebooks' outputs depend on it)."""
    graph = DependencyGraph(
        [
            Node(n, priority=priority.get(n, 0), requires=tuple((d, "") for d in ds))
            for n, ds in deps.items()
        ]
    )
    order, stuck = graph.display_order()
    done: set[str] = set()
    for name in order[: len(order) - len(stuck)]:
        ready = [n for n in deps if n not in done and set(deps[n]) <= done]
        assert name == min(ready, key=lambda n: (-priority.get(n, 0), n))
        done.add(name)
    assert stuck == set(deps) - done and stuck
    assert order[len(done) :] == sorted(stuck, key=lambda n: (-priority.get(n, 0), n))
