"""Plugin configuration: a YAML file, YAML text or a mapping in, ``PluginSpec`` objects out.

PyYAML composes the node tree (its loader stops at the first mistake, forgets lines); ``_Reader``
reads it into values with every key's line, ``${VAR:-default}``, ``{value: ..., secret: true}``
unwrapped, alias/``<<`` expansion and depth bounded; then the schema. Every problem at once.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from ..errors import ConfigError, ConfigProblem
from ._secrets import mask, redact, unwrap_marked

__all__ = ["ConfigDocument", "PluginSpec", "parse_config"]

TOP_KEYS = ("fleet", "gateway", "plugin_dirs", "plugins")
ENTRY_KEYS = ("config", "depends_on", "enabled", "priority", "required", "verify")
_TYPED = ("enabled", "priority", "required", "verify")  # `${VAR}` in them is typed as written
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_VALUE = "tag:yaml.org,2002:value"  # a bare `=`, or a Python value in a node: taken as is
_MAX_VALUES, _MAX_DEPTH = 100_000, 100  # "billion laughs" alias expansion; nesting
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(repr=False)
class PluginSpec:
    """One plugin's entry in the configuration, with the lines needed to report on it."""

    name: str
    enabled: bool = True
    priority: int | None = None
    depends_on: tuple[str, ...] = ()
    verify: bool = False  # reloads of this plugin are probed through the new chain first
    required: bool | None = None  # it guards requests (503 while not serving); None: as its class
    config: dict[str, Any] = field(default_factory=dict)  # raw, env-substituted
    # where it was written, not what it means: an entry that only moved reloads nothing
    source: str = field(default="<config>", compare=False)
    line: int | None = field(default=None, compare=False)
    lines: dict[tuple, int] = field(default_factory=dict, compare=False)  # key path -> line
    secrets: frozenset[tuple] = frozenset()  # config paths marked {value: ..., secret: true}

    def __repr__(self) -> str:  # a spec shown in a notebook must not leak its secrets
        return (
            f"PluginSpec(name={self.name!r}, enabled={self.enabled!r}, priority={self.priority!r}, "
            f"depends_on={self.depends_on!r}, required={self.required!r}, "
            f"config={mask(redact(self.config, marked=self.secrets))!r}, source={self.source!r}, "
            f"line={self.line!r})"
        )


@dataclass(repr=False)
class ConfigDocument:
    """A parsed configuration; ``gateway`` and ``fleet`` are raw, their layers validate them."""

    plugins: dict[str, PluginSpec]
    gateway: dict[str, Any]
    source: str
    gateway_lines: dict[tuple, int] = field(default_factory=dict)  # key path -> line
    fleet: dict[str, Any] = field(default_factory=dict)
    fleet_lines: dict[tuple, int] = field(default_factory=dict)
    plugin_dirs: list[str] = field(default_factory=list)  # absolute: relative to the file
    gateway_secrets: frozenset[tuple] = frozenset()  # paths marked {value: ..., secret: true}

    def __repr__(self) -> str:
        shown = mask(redact(self.gateway, marked=self.gateway_secrets))
        return f"ConfigDocument(plugins={self.plugins}, gateway={shown!r}, source={self.source!r})"


def parse_config(
    data: str | os.PathLike | Mapping,
    *,
    source: str | None = None,
    line_offset: int = 0,
    env: Mapping[str, str] | None = None,
    check: Callable[[PluginSpec], Iterable[ConfigProblem]] | None = None,
) -> ConfigDocument:
    """Parse a configuration file, YAML text or mapping into specs, or raise every problem.

    ``check`` is called with each plugin's spec whose entry is readable and returns further
    problems (an unknown plugin, a config its model refuses), reported with the parser's.

    >>> doc = parse_config("plugins:\\n  rate-limiter:\\n    config: {burst_size: 20}\\n")
    >>> doc.plugins["rate-limiter"].config
    {'burst_size': 20}
    """
    base = Path()  # plugin_dirs are relative to the file, or to the working directory
    if isinstance(data, os.PathLike) or (
        isinstance(data, str)
        and "\n" not in data
        and (data.endswith((".yaml", ".yml")) or os.path.isfile(data))
    ):
        base, source = Path(data).parent, source or str(data)
        try:
            data = Path(data).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the configuration file: {exc}", source) from None
    elif not isinstance(data, str | Mapping):
        raise TypeError(f"parse_config() takes a path, YAML text or a mapping, not {data!r}")
    reader = _Reader(source or "<config>", line_offset, os.environ if env is None else env)
    doc = reader.read(data)
    doc.plugin_dirs = [str((base / d).resolve()) for d in doc.plugin_dirs]
    for name, spec in doc.plugins.items():
        seen = [f"{p.path}." for p in reader.problems if p.plugin == name]
        if "." in seen:  # the entry itself is unreadable: nothing more to say about it
            continue
        for p in check(spec) if check else ():  # unless said already: at, above or below it
            if not any(s.startswith(f"{p.path}.") or f"{p.path}.".startswith(s) for s in seen):
                reader.problems.append(p)
    if reader.problems:  # each once, in the order of their lines
        problems = sorted(dict.fromkeys(reader.problems), key=lambda p: (p.line is None, p.line))
        raise ConfigError(problems, reader.source)
    return doc


def _to_node(value: Any, memo: dict[int, yaml.Node]) -> yaml.Node:
    """A node tree over Python data; shared or cyclic containers become shared nodes."""
    if not isinstance(value, Mapping | list | tuple):
        return yaml.ScalarNode(_VALUE, value)
    if id(value) not in memo:
        mapping = isinstance(value, Mapping)
        memo[id(value)] = yaml.MappingNode(_MAP, []) if mapping else yaml.SequenceNode(_SEQ, [])
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        pairs = [(yaml.ScalarNode(_VALUE, k), _to_node(v, memo)) for k, v in items]
        memo[id(value)].value = pairs if mapping else [v for _, v in pairs]
    return memo[id(value)]


class _Reader:
    """Reads data into values (:meth:`value`), then the schema (:meth:`document`)."""

    def __init__(self, source: str, line_offset: int, env: Mapping[str, str]):
        self.source, self.offset, self.env = source, line_offset, env
        self.problems: list[ConfigProblem] = []
        self.lines: dict[tuple, int] = {}  # key path -> line
        self.marked: set[tuple] = set()  # key paths written {value: ..., secret: true}
        self.constructor = yaml.constructor.SafeConstructor()
        self.active: set[int] = set()  # the collections being read or merged: no recursion
        self.budget = _MAX_VALUES

    def line(self, node: yaml.Node) -> int | None:
        return None if node.start_mark is None else node.start_mark.line + 1 + self.offset

    def report(self, message: str, path: tuple, *more: Any, node: yaml.Node | None = None):
        """A problem at ``path`` + ``more`` (``node``'s line, else that path's), NAME's if in it."""
        line = self.lines.get((*path, *more)) if node is None else self.line(node)
        named = len(path) > 1 and path[0] == "plugins" and isinstance(path[1], str)
        plugin, shown = (path[1], path[2:]) if named else (None, path)
        where = ".".join(str(part) for part in (*shown, *more))
        self.problems.append(ConfigProblem(message, self.source, line, plugin, where))

    def read(self, data: str | Mapping) -> ConfigDocument:
        """The document in YAML text or Python data (empty if unreadable: a problem says why)."""
        try:
            root = (
                yaml.compose(data, yaml.SafeLoader) if isinstance(data, str) else _to_node(data, {})
            )
        except RecursionError:
            self.report("the configuration is nested too deeply.", ())
        except yaml.MarkedYAMLError as exc:
            self.problems.append(self.yaml_problem(str(data), exc))
        except yaml.reader.ReaderError as exc:  # compose raises nothing else
            line = str(data).count("\n", 0, max(exc.position, 0)) + 1 + self.offset
            message = f"invalid YAML: {exc.reason} {exc.character!r} is not allowed."
            self.problems.append(ConfigProblem(message, self.source, line))
        if self.problems:
            return ConfigDocument(plugins={}, gateway={}, source=self.source)
        if root is not None and (at := self.line(root)) is not None:
            self.lines[()] = at
        return self.document(self.value(root, ()))

    def yaml_problem(self, text: str, exc: yaml.MarkedYAMLError) -> ConfigProblem:
        """PyYAML's error at the line to fix: it notices a key without its colon on the next
        line (or at the end of the text), an unclosed bracket at the end of the text."""
        lines, ctx = text.splitlines(), exc.context_mark
        mark, message = exc.problem_mark or ctx, exc.problem or exc.context or "malformed YAML"
        if exc.context and exc.problem:
            where = f" started at line {ctx.line + 1 + self.offset}" if ctx else ""
            message = f"{message} ({exc.context}{where})"
        if "'\\t'" in message:
            message += "; YAML indentation must use spaces, not tabs"
        before = [i for i in range(min(mark.line, len(lines)) if mark else 0) if lines[i].strip()]
        key = lines[before[-1]] if before else ":"  # the last line with text before the mark
        bare = ":" not in key and not key.lstrip().startswith("-")  # a key without its colon
        if exc.problem == "could not find expected ':'" and ctx is not None:
            mark, key = ctx, lines[ctx.line].strip() if ctx.line < len(lines) else ""
            message = f"could not find expected ':' after {key!r}; a key ends with a colon"
        elif exc.problem == "mapping values are not allowed here" and bare:
            mark = yaml.Mark("", 0, before[-1], len(key.rstrip()), "", 0)
            message = f"{key.strip()!r} has no ':' after it, so the next line was read as part "
            message += "of it; a key ends with a colon"
        elif exc.problem and exc.problem.startswith("expected <block end>"):
            message += "; check this line's indentation"
        elif mark is not None and mark.line >= len(lines) and ctx is not None:
            mark = ctx  # the end of the text: point where the unclosed thing began
        at = "" if mark is None else f" at column {mark.column + 1}"
        line = None if mark is None else mark.line + 1 + self.offset
        return ConfigProblem(f"invalid YAML{at}: {message}.", self.source, line)

    def value(self, node: yaml.Node | None, path: tuple) -> Any:
        """The Python value of ``node`` at ``path``, recording the line of every key under it."""
        if node is None or not self.spend(1, node, path):
            return None
        if isinstance(node, yaml.ScalarNode):
            value = self.construct(node, path)
            if not isinstance(value, str) or "${" not in value:
                return value
            text = _ENV_REF.sub(lambda m: self.substitute(m, path), value)
            if node.style is None and len(path) == 3 and path[0] == "plugins" and path[2] in _TYPED:
                tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False))
                return self.construct(yaml.ScalarNode(tag, text), path)
            return text
        if id(node) in self.active or len(self.active) >= _MAX_DEPTH:
            self.report("a value may not contain itself (recursive alias) or nest this deep.", path)
            return None
        if node.tag not in (_MAP, _SEQ):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.report(f"unsupported tag {tag!r}; use a plain mapping or list.", path)
        self.active.add(id(node))
        keyed = isinstance(node, yaml.MappingNode)  # else a list: items are their own key nodes
        entries = self.items(node, path) if keyed else dict(enumerate(zip(node.value, node.value)))
        out = {}
        for key, (key_node, value_node) in entries.items():
            if (line := self.line(key_node)) is not None:
                self.lines[(*path, key)] = line
            out[key] = self.value(value_node, (*path, key))
        self.active.discard(id(node))
        if not keyed:
            return list(out.values())
        value, marked = unwrap_marked(out)
        if not marked or not (path[:1] in (("gateway",), ("fleet",)) or path[2:3] == ("config",)):
            return out  # a mark is for data (a config, the gateway, the fleet), not the schema
        self.marked.add(path)
        return value

    def items(self, node: yaml.Node, path: tuple) -> dict[Any, tuple[yaml.Node, Any]]:
        """A mapping's entries (key -> key node, value node), own before merged; no duplicates."""
        entries: dict[Any, tuple[yaml.Node, Any]] = {}
        sources: list[yaml.Node] = []
        raw = len(path) < 3 and path[:1] in ((), ("plugins",))  # a plugin named `on` is "on"
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                many = isinstance(value_node, yaml.SequenceNode)
                sources += value_node.value if many else [value_node]
            elif not isinstance(key_node, yaml.ScalarNode):
                message = f"keys must be plain values, not {_describe(key_node)}."
                self.report(message, path, node=key_node)
            elif (key := key_node.value if raw else self.construct(key_node, path)) in entries:
                at = f" (first at line {first})" if (first := self.line(entries[key][0])) else ""
                message = f"duplicate key {key!r}{at}; each key may appear only once."
                self.report(message, path, key, node=key_node)
            else:
                entries[key] = (key_node, value_node)
        for source in sources:  # each counts against the budget: `<<: [*a, *a]` nested a few
            if self.budget < 0:  # levels deep is a "billion laughs" too, its keys collapsed
                break  # already too big: merging further would only take longer
            if not isinstance(source, yaml.MappingNode) or id(source) in self.active:
                what = "recursion" if isinstance(source, yaml.MappingNode) else _describe(source)
                message = f"a merge key '<<' needs a mapping or a list of mappings, not {what}."
                self.report(message, path, node=source)
                continue
            self.active.add(id(source))
            merged = self.items(source, path)
            self.active.discard(id(source))
            self.spend(len(merged), source, path)
            entries |= {key: pair for key, pair in merged.items() if key not in entries}
        return entries

    def spend(self, count: int, node: yaml.Node, path: tuple) -> bool:
        """Take ``count`` values from the expansion budget; False (reported once) past it."""
        self.budget -= count
        if self.budget < 0 <= self.budget + count:
            message = f"the configuration expands to more than {_MAX_VALUES} values (aliases and "
            message += "'<<' merge keys count every time they are used); write the values out."
            self.report(message, path[:2], node=node)
        return self.budget >= 0

    def construct(self, node: yaml.ScalarNode, path: tuple) -> Any:
        """A scalar with SafeConstructor's meaning (bool, int, float, null, str, ...)."""
        if node.tag == _VALUE:
            return node.value
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            message = f"unsupported tag {tag!r}; remove it or quote the value."
        except Exception:  # explicit tags (`!!int x`) fail in many ways
            message = f"{node.value!r} is not a valid {tag} value."
        self.constructor.recursive_objects.clear()
        self.report(message, path, node=node)
        return None

    def substitute(self, match: re.Match, path: tuple) -> str:
        """``${VAR}`` and ``${VAR:-default}`` from the environment; ``$${`` is a literal."""
        name, default = match.groups()
        value = "${" if name is None else self.env.get(name)
        if value or (value is not None and default is None):
            return value
        if default is not None:
            return default
        why = f"set it or write ${{{name}:-default}}"
        self.report(f"environment variable {name!r} is not set and has no default; {why}.", path)
        return match.group(0)

    def document(self, root: Any) -> ConfigDocument:
        """helixlab's schema, on the values read."""
        doc = ConfigDocument(plugins={}, gateway={}, source=self.source)
        if not isinstance(root, dict):
            what = f"must be a mapping with a 'plugins' key, not {_describe(root)}"
            what = "is empty; it needs a 'plugins' mapping" if root is None else what
            self.report(f"the configuration {what}.", ())
            return doc
        for key, value in root.items():
            if key == "plugins":
                what = "'plugins' must be a mapping of plugin name to settings"
                for name, entry in self.expect(value, dict, (key,), what).items():
                    if isinstance(name, str) and name.strip():
                        doc.plugins[name] = self.entry(name, entry)
                    else:
                        message = f"plugin names must be non-empty strings, not {name!r}."
                        self.report(message, (key,), name)
            elif key in ("gateway", "fleet"):
                setattr(doc, key, self.expect(value, dict, (key,), f"{key!r} must be a mapping"))
            elif key == "plugin_dirs":
                what = "'plugin_dirs' must be a list of directories"
                for i, item in enumerate(self.expect(value, list, (key,), what)):
                    if isinstance(item, str) and item.strip():
                        doc.plugin_dirs.append(item)
                    else:
                        message = f"a plugins directory must be a path, not {_describe(item)}."
                        self.report(message, (key,), i)
            else:
                self.report(_unknown_message(key, TOP_KEYS), (), key)
        if "plugins" not in root:
            self.report("the required 'plugins' mapping is missing.", ())
        for path, line in self.lines.items():  # to each plugin's config, the gateway, the fleet
            if path[3:] and path[0] == "plugins" and path[2] == "config" and path[1] in doc.plugins:
                doc.plugins[path[1]].lines[path[3:]] = line
            elif path[1:] and path[0] in ("gateway", "fleet"):
                getattr(doc, f"{path[0]}_lines")[path[1:]] = line
        doc.gateway_secrets = frozenset(path[1:] for path in self.marked if path[0] == "gateway")
        for path in self.marked:
            if path[:1] == ("plugins",) and path[2:3] == ("config",) and path[1] in doc.plugins:
                doc.plugins[path[1]].secrets |= {path[3:]}
        return doc

    def entry(self, name: str, value: Any) -> PluginSpec:
        at = ("plugins", name)
        spec = PluginSpec(name=name, source=self.source, line=self.lines.get(at))
        what = f"a plugin's entry must be a mapping of {', '.join(ENTRY_KEYS)} (or empty)"
        for key, item in self.expect(value, dict, at, what).items():
            if key in _TYPED:  # priority: an integer (or null), not a bool
                integer = item is None or (isinstance(item, int) and not isinstance(item, bool))
                if integer if key == "priority" else isinstance(item, bool):
                    setattr(spec, key, item)
                else:
                    must = "an integer" if key == "priority" else "true or false"
                    self.report(f"{key!r} must be {must}, not {_describe(item)}.", at, key)
            elif key == "depends_on":
                example = '[rate-limiter, "custom-logger>=1.0"]'
                what = f"'depends_on' must be a list of plugin names such as {example}"
                for i, dep in enumerate(self.expect(item, list, (*at, key), what)):
                    if (message := _dependency_problem(dep)) is None:
                        spec.depends_on += (dep,)
                    else:
                        self.report(message, at, key, i)
            elif key == "config":
                spec.config = self.expect(item, dict, (*at, key), "'config' must be a mapping")
            else:
                self.report(_unknown_message(key, ENTRY_KEYS), at, key)
        return spec

    def expect(self, value: Any, kind: type, path: tuple, what: str) -> Any:
        """``value`` if it is a ``kind`` (null: an empty one), else a problem "<what>, not ..."."""
        if value is None or isinstance(value, kind):
            return value or kind()
        self.report(f"{what}, not {_describe(value)}.", path)
        return kind()


def _describe(value: Any) -> str:
    """What a value (or a node: its text) holds, for "must be X, not Y" messages."""
    value = value.value if isinstance(value, yaml.ScalarNode) else value
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str | int | float):
        return f"the {'string' if isinstance(value, str) else 'number'} {value!r}"
    if isinstance(value, list | dict | yaml.CollectionNode):
        return "a mapping" if isinstance(value, dict | yaml.MappingNode) else "a list"
    return f"a {type(value).__name__}"


def _unknown_message(key: Any, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    if not choices:
        return f"unknown key {key!r}: the config model has no fields yet, so it takes no keys."
    close = difflib.get_close_matches(str(key), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; valid keys are: {', '.join(choices)}."


def _dependency_problem(dep: Any) -> str | None:
    if not isinstance(dep, str):
        return f"a dependency must be a plugin name, not {_describe(dep)}."
    try:
        Requirement(dep)
    except InvalidRequirement as exc:
        return f"invalid dependency {dep!r}: {exc}; write a name, e.g. 'x' or 'x>=1.0'."
    return None
