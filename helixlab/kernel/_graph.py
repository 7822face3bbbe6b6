"""The dependency graph: load order, reload cascades, validation and drawings.

Convention: a mapping ``deps`` sends every plugin to the names of its dependencies, so an
edge ``a -> b`` reads "a depends on b". Cycle paths follow the same arrows:
``["a", "b", "c", "a"]`` is shown as ``a -> b -> c -> a`` (a depends on b, which depends on
c, which depends on a). Drawings point the other way, from a dependency to what it feeds,
because that is the direction in which plugins start.

The algorithms are pure functions over plain mappings; ``DependencyGraph`` wraps them
with the registry's view (versions, priorities, enabled flags).
"""

from __future__ import annotations

import difflib
import functools
import heapq
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, repeat
from types import MappingProxyType

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import (
    CycleError,
    DependencyError,
    DisabledDependencyError,
    MissingDependencyError,
    PluginNotFoundError,
    RegistryError,
    VersionConflictError,
)
from . import _drawing

__all__ = [
    "DependencyGraph",
    "Node",
    "dependencies",
    "dependents",
    "find_cycle",
    "load_order",
    "reload_order",
]

Deps = Mapping[str, Collection[str]]


# -- pure algorithms ---------------------------------------------------------------


def _kahn(deps: Deps, priority: Mapping[str, int] | None) -> tuple[list[str], list[str]]:
    """Kahn's algorithm; returns (order, nodes left unordered because of a cycle).

    Nodes are ranked once by (-priority, name) so the heap holds plain ints: ready nodes
    pop in rank order, which is exactly "higher priority first, then by name". Edges are
    turned into ints and counted with C-level ``map``/``chain``; only the reverse
    adjacency and the decrements cost Python bytecode per edge.
    """
    ranked = sorted(deps)
    if priority:
        full = dict.fromkeys(ranked, 0)
        full.update(priority)
        ranked.sort(key=full.__getitem__, reverse=True)  # stable: names stay ascending
    index = {name: i for i, name in enumerate(ranked)}
    lists = [deps[name] for name in ranked]
    try:
        parents = list(map(index.__getitem__, chain.from_iterable(lists)))
    except KeyError:  # some dependencies are not nodes: ignore them
        lists = [[d for d in ds if d in index] for ds in lists]
        parents = list(map(index.__getitem__, chain.from_iterable(lists)))
    indegree = list(map(len, lists))
    users = chain.from_iterable(map(repeat, range(len(ranked)), indegree))
    children: list[list[int]] = [[] for _ in ranked]
    for j, i in zip(parents, users):
        children[j].append(i)

    heap = [i for i, k in enumerate(indegree) if not k]  # ascending, hence already a heap
    order: list[int] = []
    push, pop, emit = heapq.heappush, heapq.heappop, order.append
    while heap:
        i = pop(heap)
        emit(i)
        for c in children[i]:
            if indegree[c] == 1:
                push(heap, c)
            indegree[c] -= 1
    left = [ranked[i] for i, k in enumerate(indegree) if k] if len(order) < len(ranked) else []
    return [ranked[i] for i in order], left


def load_order(deps: Deps, priority: Mapping[str, int] | None = None) -> list[str]:
    """Every node, dependencies before dependents.

    Among nodes ready at the same time, higher ``priority`` goes first (missing means 0),
    then names ascending, so the order never depends on the mapping's iteration order.
    Dependency names that are not keys of ``deps`` are ignored. Raises ``CycleError``.
    """
    order, left = _kahn(deps, priority)
    if left:
        cycle = find_cycle({name: deps[name] for name in left})
        assert cycle is not None  # every node left over waits on another one left over
        raise CycleError(cycle)
    return order


def find_cycle(deps: Deps) -> list[str] | None:
    """A cycle as a path along "depends on" arrows, first name repeated last; or None.

    Iterative depth-first search over sorted names, so deep graphs cannot hit the
    recursion limit and the same graph always yields the same cycle, rotated to start at
    its smallest name.
    """
    adjacency = {name: sorted({d for d in ds if d in deps}) for name, ds in deps.items()}
    in_progress, done = 1, 2
    mark: dict[str, int] = {}
    for start in sorted(adjacency):
        if start in mark:
            continue
        mark[start] = in_progress
        path = [start]
        stack = [iter(adjacency[start])]
        while stack:
            for dep in stack[-1]:
                seen = mark.get(dep)
                if seen is None:
                    mark[dep] = in_progress
                    path.append(dep)
                    stack.append(iter(adjacency[dep]))
                    break
                if seen == in_progress:
                    cycle = path[path.index(dep) :]
                    first = cycle.index(min(cycle))
                    cycle = cycle[first:] + cycle[:first]
                    return [*cycle, cycle[0]]
            else:
                mark[path.pop()] = done
                stack.pop()
    return None


def _reverse(deps: Deps) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {name: [] for name in deps}
    for name, ds in deps.items():
        for d in ds:
            if d in users:
                users[d].append(name)
    return users


def _reach(edges: Mapping[str, Iterable[str]], starts: Iterable[str]) -> set[str]:
    """Everything reachable from ``starts`` in one or more steps."""
    found: set[str] = set()
    todo = [n for s in starts for n in edges.get(s, ())]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(edges.get(name, ()))
    return found


def dependents(deps: Deps, name: str, *, transitive: bool = True) -> set[str]:
    """Who depends on ``name``: what must restart when it changes.

    ``name`` itself is included only if it sits on a cycle.
    """
    if not transitive:
        return {user for user, ds in deps.items() if name in ds}
    return _reach(_reverse(deps), [name])


def dependencies(deps: Deps, name: str, *, transitive: bool = True) -> set[str]:
    """What ``name`` depends on (only names that are keys of ``deps``)."""
    if not transitive:
        return {d for d in deps.get(name, ()) if d in deps}
    known = {n: [d for d in ds if d in deps] for n, ds in deps.items()}
    return _reach(known, [name])


def reload_order(
    deps: Deps, names: str | Iterable[str], priority: Mapping[str, int] | None = None
) -> list[str]:
    """The targets plus all their transitive dependents, dependencies first.

    The result is exactly the matching subsequence of ``load_order(deps, priority)``: it is
    computed on the targets' cascade plus everything that cascade depends on, a set closed
    under dependencies, on which Kahn's choices match the full run. A cycle elsewhere in
    the graph does not stop it.
    """
    targets = {names} if isinstance(names, str) else set(names)
    targets &= deps.keys()
    cascade = targets | _reach(_reverse(deps), targets)
    known = {n: [d for d in ds if d in deps] for n, ds in deps.items()}
    closure = cascade | _reach(known, cascade)
    order = load_order({n: known[n] for n in closure}, priority)
    return [n for n in order if n in cascade]


# -- the registry's view -------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One plugin as the graph sees it; ``requires`` pairs a name with a PEP 440 specifier."""

    name: str
    version: str = "0.0.0"
    priority: int = 0
    enabled: bool = True
    requires: tuple[tuple[str, str], ...] = ()

    @functools.cached_property
    def deps(self) -> tuple[str, ...]:
        """The names it depends on (computed once per node; registry entries keep theirs)."""
        return tuple(name for name, _ in self.requires)


class DependencyGraph:
    """The plugins' declared graph, with the checks and orders the kernel needs.

    Loading questions (``validate``, ``load_order``, ``reload_order``, ``find_cycle``)
    concern enabled plugins only: a disabled plugin is never loaded, so its own
    dependencies do not matter. Structural questions (``dependents``, ``dependencies``)
    answer over every registered plugin. ``load_order`` does not validate; call
    ``validate()`` first.
    """

    def __init__(self, nodes: Iterable[Node] | Mapping[str, Node]):
        if isinstance(nodes, Mapping):  # name -> node, as the registry gives it
            table: dict[str, Node] = dict(nodes)
        else:
            table = {}
            for node in nodes:
                if node.name in table:
                    raise RegistryError(f"Plugin {node.name!r} appears twice in the graph.")
                table[node.name] = node
        self.nodes: Mapping[str, Node] = MappingProxyType(table)
        self._deps = {n: node.deps for n, node in table.items()}
        disabled = {n for n, node in table.items() if not node.enabled}
        if disabled:  # loading questions concern enabled plugins only
            self._enabled = {
                n: [d for d in ds if d not in disabled]
                for n, ds in self._deps.items()
                if n not in disabled
            }
        else:  # (names that are no node are ignored by every algorithm here)
            self._enabled = self._deps
        self._priority = {n: node.priority for n, node in table.items() if node.priority}
        self._cascades: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._valid = False
        self._order: list[str] | None = None  # the load order, once validation found one
        self._users_of: dict[str, list[str]] | None = None

    def with_node(self, node: Node) -> DependencyGraph:
        """This graph with ``node`` in place of its namesake.

        When the node declares the same dependencies, priority and enabled flag (a plugin
        redefined or reconfigured, the usual change), the structure is the same: the new
        graph shares it, with the orders already found, and is valid if this one was and
        every specifier on the node still accepts its version.
        """
        old = self.nodes.get(node.name)
        table = dict(self.nodes)
        table[node.name] = node
        same = old is not None and (old.requires, old.priority, old.enabled) == (
            node.requires,
            node.priority,
            node.enabled,
        )
        if not same:
            return DependencyGraph(table)
        new = object.__new__(DependencyGraph)
        new.nodes = MappingProxyType(table)
        new._deps, new._enabled, new._priority = self._deps, self._enabled, self._priority
        new._cascades = self._cascades  # same structure, same answers
        new._order = self._order
        new._valid = self._valid and (
            old.version == node.version
            or not any(
                problem
                for user in self._users().get(node.name, ())
                for problem in new._check_requires(new.nodes[user])
            )
        )
        new._users_of = self._users_of
        return new

    def _users(self) -> dict[str, list[str]]:
        """Who declares each plugin (computed once per structure)."""
        if self._users_of is None:
            self._users_of = _reverse(self._deps)
        return self._users_of

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        return f"<DependencyGraph of {len(self)} plugins>"

    def _node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise PluginNotFoundError(name, self.nodes) from None

    def validate(self) -> None:
        """Raise one ``DependencyError`` listing every problem, so one fix pass suffices.

        The graph is immutable: once found valid it is not checked again (every reload of
        an unchanged registry validates it). A graph with problems raises new errors each
        time.
        """
        if self._valid:
            return
        problems = self._find_problems()
        if problems:
            raise DependencyError.combine(problems)
        self._valid = True

    def _find_problems(self) -> list[DependencyError]:
        problems: list[DependencyError] = []
        for name in sorted(self.nodes):
            node = self.nodes[name]
            if node.enabled:
                problems.extend(self._check_requires(node))
        order, stuck = _kahn(self._enabled, self._priority)  # the order, kept if no cycle
        if not stuck:
            self._order = order
        remaining = {n: self._enabled[n] for n in stuck}
        while (cycle := find_cycle(remaining)) is not None:
            problems.append(CycleError(cycle))
            remaining = {n: ds for n, ds in remaining.items() if n not in cycle}
        return problems

    def _check_requires(self, node: Node) -> Iterator[DependencyError]:
        name = node.name
        for dep, spec in node.requires:
            target = self.nodes.get(dep)
            involved = (name, dep)
            if target is None:
                known = ", ".join(sorted(self.nodes)) or "none"
                close = difflib.get_close_matches(dep, self.nodes, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                yield MissingDependencyError(
                    f"Plugin {name!r} depends on {dep!r}, which is not registered{hint}. "
                    f"Known plugins: {known}.",
                    plugins=involved,
                )
                continue
            if not target.enabled:
                yield DisabledDependencyError(
                    f"Plugin {name!r} depends on {dep!r}, which is disabled. "
                    f"Enable {dep!r} or disable {name!r}.",
                    plugins=involved,
                )
                continue
            if not spec:
                continue
            try:
                wanted = SpecifierSet(spec)
            except InvalidSpecifier:
                yield VersionConflictError(
                    f"Plugin {name!r} declares an invalid version specifier {spec!r} for "
                    f"{dep!r} (use PEP 440, e.g. '>=1.0').",
                    plugins=involved,
                )
                continue
            try:
                Version(target.version)
            except InvalidVersion:
                yield VersionConflictError(
                    f"Plugin {name!r} needs {dep + spec!r}, but {dep!r} has an invalid "
                    f"version {target.version!r}.",
                    plugins=involved,
                )
                continue
            if not wanted.contains(target.version, prereleases=True):
                yield VersionConflictError(
                    f"Plugin {name!r} needs {dep + spec!r}, but {dep!r} is {target.version}.",
                    plugins=involved,
                )

    def load_order(self) -> list[str]:
        """Enabled plugins in start order (stop in reverse)."""
        if self._order is not None:  # found by validate(): the graph has not changed since
            return list(self._order)
        return load_order(self._enabled, self._priority)

    def reload_order(self, names: str | Iterable[str]) -> list[str]:
        """What a reload of ``names`` restarts: them and every enabled dependent, deps first."""
        targets = [names] if isinstance(names, str) else list(names)
        key = tuple(targets)
        known = self._cascades.get(key)
        if known is not None:  # the graph is immutable: the same question, the same answer
            return list(known)
        for name in targets:
            if name not in self._enabled:
                self._node(name)  # unknown: "not registered"; else known but disabled
                raise PluginNotFoundError(name, self._enabled, what="enabled")
        if self._order is not None:
            # validated: the cascade's part of the full order, which the reload_order
            # function is guaranteed to equal, without a second sort of the closure
            cascade = set(targets) | _reach(_reverse(self._enabled), targets)
            order = [n for n in self._order if n in cascade]
        else:
            order = reload_order(self._enabled, targets, self._priority)
        self._cascades[key] = tuple(order)
        return order

    def dependents(self, name: str, *, transitive: bool = False) -> list[str]:
        """Registered plugins that declare ``name`` (directly, or through others)."""
        self._node(name)
        return sorted(dependents(self._deps, name, transitive=transitive))

    def dependents_map(self) -> dict[str, list[str]]:
        """The direct dependents of every plugin, sorted, in one pass (for tables of all)."""
        return {name: sorted(users) for name, users in _reverse(self._deps).items()}

    def dependencies(self, name: str, *, transitive: bool = False) -> list[str]:
        """Registered plugins ``name`` declares (directly, or through others)."""
        self._node(name)
        return sorted(dependencies(self._deps, name, transitive=transitive))

    def find_cycle(self) -> list[str] | None:
        """A cycle among enabled plugins, as ``["a", "b", "a"]`` (a depends on b); or None."""
        return find_cycle(self._enabled)

    def display_order(self) -> tuple[list[str], set[str]]:
        """Load order that never fails: plugins stuck behind a cycle come last, sorted."""
        order, stuck = _kahn(self._enabled, self._priority)
        disabled = sorted(n for n, node in self.nodes.items() if not node.enabled)
        return order + stuck + disabled, set(stuck)

    def satisfied(self, dep: str, spec: str) -> bool:
        """Whether ``dep`` is registered at a version ``spec`` accepts."""
        target = self.nodes.get(dep)
        if target is None or not spec:
            return target is not None
        try:
            return SpecifierSet(spec).contains(target.version, prereleases=True)
        except InvalidSpecifier:
            return False

    def to_dot(
        self,
        *,
        states: Mapping[str, str] | None = None,
        highlight: Iterable[str] = (),
        title: str | None = None,
    ) -> str:
        """Graphviz DOT source, arrows from a dependency to its dependents (see ``_drawing``)."""
        return _drawing.to_dot(self, states=states or {}, highlight=highlight, title=title)

    def to_text(
        self, *, states: Mapping[str, str] | None = None, highlight: Iterable[str] = ()
    ) -> str:
        """One line per plugin in load order, for terminals and logs (see ``_drawing``)."""
        return _drawing.to_text(self, states=states or {}, highlight=highlight)
