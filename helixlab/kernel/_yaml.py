"""A YAML reader for configurations that learners write by hand.

PyYAML's loader stops at the first mistake and forgets lines; ``Reader`` walks its node
tree instead: plain Python values, the line of every key path, every problem at once (a
``ConfigProblem`` each), ``${VAR:-default}`` from the environment, and a bound on what a
hostile document may cost (alias and ``<<`` expansion, depth). It knows no schema:
``_config`` reads helixlab's with it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from ..errors import ConfigProblem

__all__ = ["Reader"]

_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_NULL, _MERGE = "tag:yaml.org,2002:null", "tag:yaml.org,2002:merge"
_MAX_VALUES = 100_000  # stops "billion laughs" alias expansion
_MAX_DEPTH = 100
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_FAILED = object()


class _ValueNode(yaml.ScalarNode):
    """A scalar that is already a Python value: lets a dict go through the YAML path."""

    def __init__(self, value: Any):
        super().__init__("tag:helixlab:value", "", None, None)
        self.python = value


def _to_node(value: Any, memo: dict[int, yaml.Node]) -> yaml.Node:
    """A node tree over Python data; shared or cyclic containers become shared nodes."""
    if isinstance(value, Mapping | list | tuple):
        if id(value) in memo:
            return memo[id(value)]
        if isinstance(value, Mapping):
            node: yaml.Node = memo.setdefault(id(value), yaml.MappingNode(_MAP, []))
            node.value = [(_ValueNode(k), _to_node(v, memo)) for k, v in value.items()]
        else:
            node = memo.setdefault(id(value), yaml.SequenceNode(_SEQ, []))
            node.value = [_to_node(v, memo) for v in value]
        return node
    return _ValueNode(value)


def _join(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path)


def _describe(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list | yaml.SequenceNode):
        return "a list"
    if isinstance(value, dict | yaml.MappingNode):
        return "a mapping"
    return f"a {type(value).__name__}"


def _unknown_message(key: Any, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    close = difflib.get_close_matches(str(key), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if not choices:
        return f"unknown key {key!r}: the config model has no fields yet, so it takes no keys."
    return f"unknown key {key!r}{hint}; valid keys are: {', '.join(choices)}."


def _where_the_mistake_is(
    text: str, exc: yaml.MarkedYAMLError, mark: Any, message: str
) -> tuple[Any, str]:
    """Move a YAML error from where the parser noticed it to the line the learner must fix.

    PyYAML notices a key without its colon on the line after it (or at the end of the
    text), and an unclosed bracket at the end of the text.
    """
    lines = text.splitlines()
    ctx = exc.context_mark
    if exc.problem == "could not find expected ':'" and ctx is not None:
        key = lines[ctx.line].strip() if ctx.line < len(lines) else ""
        return ctx, f"could not find expected ':' after {key!r}; a key ends with a colon"
    if exc.problem == "mapping values are not allowed here" and mark is not None:
        before = [i for i in range(min(mark.line, len(lines))) if lines[i].strip()]
        previous = lines[before[-1]] if before else ""
        if before and ":" not in previous and not previous.lstrip().startswith("-"):
            i = before[-1]
            key = lines[i].strip()
            moved = yaml.Mark(mark.name, 0, i, len(lines[i].rstrip()), "", 0)
            return moved, (
                f"{key!r} has no ':' after it, so the next line was read as part of it; "
                f"a key ends with a colon"
            )
    if exc.problem and exc.problem.startswith("expected <block end>"):
        return mark, f"{message}; check this line's indentation"
    if mark is not None and mark.line >= len(lines) and ctx is not None:
        return ctx, message  # the end of the text: point where the unclosed thing began
    return mark, message


class Reader:
    """Builds Python values from a node tree, recording lines and collecting problems.

    ``plugin`` and ``path``, passed down the walk, say where a problem is. A subclass reads
    a schema by walking the root with :meth:`items` and reading values with :meth:`value`.
    """

    def __init__(self, source: str, line_offset: int, env: Mapping[str, str]):
        self.source = source
        self.offset = line_offset
        self.env = env
        self.problems: list[ConfigProblem] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver = yaml.resolver.Resolver()
        self._active: set[int] = set()
        self._merging: set[int] = set()
        self._budget = _MAX_VALUES

    def line(self, node: yaml.Node | None) -> int | None:
        mark = node.start_mark if node is not None else None
        return None if mark is None else mark.line + 1 + self.offset

    def report(
        self, message: str, node: yaml.Node | None = None, *, plugin: str | None = None, path=()
    ) -> None:
        path = path if isinstance(path, str) else _join(path)
        self.problems.append(ConfigProblem(message, self.source, self.line(node), plugin, path))

    def read(self, content: str | Mapping) -> Any:
        """The node tree of YAML text, or of Python data; ``_FAILED`` when it has none."""
        try:
            return _to_node(content, {}) if isinstance(content, Mapping) else self.compose(content)
        except RecursionError:
            self.report("the configuration is nested too deeply.")
            return _FAILED

    def compose(self, text: str) -> Any:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = exc.problem or exc.context or "malformed YAML"
            if exc.context and exc.problem:
                ctx = exc.context_mark
                where = f" started at line {ctx.line + 1 + self.offset}" if ctx else ""
                message = f"{message} ({exc.context}{where})"
            if "'\\t'" in message:
                message += "; YAML indentation must use spaces, not tabs"
            mark, message = _where_the_mistake_is(text, exc, mark, message)
            line = None if mark is None else mark.line + 1 + self.offset
            column = f" at column {mark.column + 1}" if mark is not None else ""
            self.problems.append(
                ConfigProblem(f"invalid YAML{column}: {message}.", self.source, line)
            )
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, max(exc.position, 0)) + 1 + self.offset
            message = f"invalid YAML: {exc.reason} {exc.character!r} is not allowed."
            self.problems.append(ConfigProblem(message, self.source, line))
        except yaml.YAMLError as exc:
            self.problems.append(ConfigProblem(f"invalid YAML: {exc}", self.source))
        return _FAILED

    def expect(
        self, node: yaml.Node, kind: type[yaml.Node], what: str, *, plugin=None, path=()
    ) -> bool:
        """Whether ``node`` is a ``kind`` (a mapping or a list) to walk.

        Null is an empty one: False, and no problem. Anything else is reported as
        ``"<what>, not <what it is>."``.
        """
        if _is_null(node):
            return False
        if isinstance(node, kind):
            return True
        self.report(f"{what}, not {self.describe(node)}.", node, plugin=plugin, path=path)
        return False

    def mapping(self, node: yaml.Node, plugin: str | None, path: tuple, lines: dict) -> dict:
        """The mapping at ``path`` (null is an empty one), its lines recorded in ``lines``."""
        what = f"{path[-1]!r} must be a mapping"
        if not self.expect(node, yaml.MappingNode, what, plugin=plugin, path=path):
            return {}
        return self.value(node, plugin, path, lines)

    def describe(self, node: yaml.Node) -> str:
        """What a node holds, for "must be X, not Y" messages."""
        if isinstance(node, _ValueNode):
            return _describe(node.python)
        if isinstance(node, yaml.ScalarNode):
            return _describe(self.construct(node, None, ()))
        return _describe(node)

    def items(
        self, node: yaml.Node, plugin: str | None, path: tuple, *, raw: bool = False
    ) -> list[tuple[Any, yaml.Node, yaml.Node]]:
        """The entries of a mapping after ``<<`` merges; duplicate keys are problems."""
        explicit, merged = [], []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self.merge_sources(value_node, plugin, path))
            else:
                explicit.append((key_node, value_node))
        entries: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        for i, (key_node, value_node) in enumerate(explicit + merged):
            key = self.key(key_node, plugin, path, raw=raw)
            if key is _FAILED:
                continue
            if key in entries and i < len(explicit):
                first = self.line(entries[key][0])
                at = f" (first at line {first})" if first is not None else ""
                message = f"duplicate key {key!r}{at}; each key may appear only once."
                self.report(message, key_node, plugin=plugin, path=(*path, key))
                continue
            entries.setdefault(key, (key_node, value_node))
        return [(key, kn, vn) for key, (kn, vn) in entries.items()]

    def merge_sources(self, node: yaml.Node, plugin: str | None, path: tuple) -> list:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        pairs: list = []
        for source in sources:
            if self._budget < 0:
                break  # already too big: merging further would only take longer
            if not isinstance(source, yaml.MappingNode) or id(source) in self._merging:
                message = "a merge key '<<' needs a mapping or a list of mappings, not recursion."
                if not isinstance(source, yaml.MappingNode):
                    message = f"a merge key '<<' needs a mapping, not {self.describe(source)}."
                self.report(message, source, plugin=plugin, path=path)
                continue
            self._merging.add(id(source))
            try:
                merged = self.items(source, plugin, path)
            finally:
                self._merging.discard(id(source))
            # merged keys count against the alias budget: `<<: [*a, *a]` nested a few levels
            # deep is a "billion laughs" too, even though the merged keys collapse
            self.spend(len(merged), source, plugin)
            pairs.extend((kn, vn) for _, kn, vn in merged)
        return pairs

    def spend(self, count: int, node: yaml.Node | None, plugin: str | None) -> bool:
        """Take ``count`` values from the expansion budget; False (reported once) past it."""
        before = self._budget
        self._budget -= count
        if self._budget < 0 <= before:
            message = (
                f"the configuration expands to more than {_MAX_VALUES} values (aliases and "
                f"'<<' merge keys count every time they are used); write the values out."
            )
            self.report(message, node, plugin=plugin)
        return self._budget >= 0

    def key(self, node: yaml.Node, plugin: str | None, path: tuple, *, raw: bool) -> Any:
        if isinstance(node, _ValueNode):
            return node.python
        if not isinstance(node, yaml.ScalarNode):
            message = f"keys must be plain values, not {self.describe(node)}."
            self.report(message, node, plugin=plugin, path=path)
            return _FAILED
        return node.value if raw else self.construct(node, plugin, path)

    def value(
        self, node: yaml.Node, plugin: str | None, path: tuple, lines: dict, *, retype=False
    ) -> Any:
        """The Python value of ``node``, recording the line of every key path under it."""
        if not self.spend(1, node, plugin):
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, plugin, path, retype=retype)
        if id(node) in self._active or len(self._active) >= _MAX_DEPTH:
            message = "a value may not contain itself (recursive alias) or nest this deep."
            self.report(message, node, plugin=plugin, path=path)
            return None
        if node.tag not in (_MAP, _SEQ):
            message = f"unsupported tag {_short_tag(node.tag)!r}; use a plain mapping or list."
            self.report(message, node, plugin=plugin, path=path)
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                out = []
                for i, item in enumerate(node.value):
                    self.record(lines, (*path, i), item)
                    out.append(self.value(item, plugin, (*path, i), lines))
                return out
            mapping = {}
            for key, key_node, value_node in self.items(node, plugin, path):
                self.record(lines, (*path, key), key_node)
                mapping[key] = self.value(value_node, plugin, (*path, key), lines)
            return self.finish(mapping, path)
        finally:
            self._active.discard(id(node))

    def finish(self, mapping: dict, path: tuple) -> Any:
        """What a mapping read at ``path`` stands for: itself, unless a subclass says so."""
        return mapping

    def record(self, lines: dict, path: tuple, node: yaml.Node) -> None:
        if (line := self.line(node)) is not None:
            lines[path] = line

    def scalar(self, node: yaml.ScalarNode, plugin: str | None, path: tuple, *, retype: bool):
        if isinstance(node, _ValueNode):
            value, plain = node.python, True
        else:
            value, plain = self.construct(node, plugin, path), node.style is None
        if not isinstance(value, str) or "${" not in value:
            return value
        text, substituted = self.substitute(value, node, plugin, path)
        if retype and substituted and plain:  # `enabled: ${FLAG:-true}` is a bool, as written
            tag = self._resolver.resolve(yaml.ScalarNode, text, (True, False))
            return self.construct(yaml.ScalarNode(tag, text), plugin, path)
        return text

    def construct(self, node: yaml.ScalarNode, plugin: str | None, path: tuple) -> Any:
        """A scalar with SafeConstructor's meaning (bool, int, float, null, str, ...)."""
        if node.tag == "tag:yaml.org,2002:value":  # a bare `=`: SafeConstructor refuses it
            return node.value
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            message = f"unsupported tag {_short_tag(node.tag)!r}; remove it or quote the value."
        except Exception:  # explicit tags (`!!int x`) fail in many ways
            message = f"{node.value!r} is not a valid {_short_tag(node.tag)} value."
        self._constructor.recursive_objects.clear()
        self.report(message, node, plugin=plugin, path=path)
        return None

    def substitute(self, text: str, node: yaml.Node, plugin: str | None, path: tuple):
        """``${VAR}`` and ``${VAR:-default}`` from the environment; ``$${`` is a literal."""
        substituted = False

        def replace(match: re.Match) -> str:
            nonlocal substituted
            if match.group(0) == "$${":
                return "${"
            substituted = True
            name, default = match.group(1), match.group(2)
            value = self.env.get(name)
            if value or (value is not None and default is None):
                return value
            if default is not None:
                return default
            self.report(
                f"environment variable {name!r} is not set and has no default; set it or "
                f"write ${{{name}:-default}}.",
                node,
                plugin=plugin,
                path=path,
            )
            return match.group(0)

        return _ENV_REF.sub(replace, text), substituted


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _is_null(node: yaml.Node | None) -> bool:
    if isinstance(node, _ValueNode):
        return node.python is None
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL)
