"""Plugin configuration: YAML in, ``PluginSpec`` objects out, every problem with its line.

The schema of ``configs/plugins.yaml`` (a file, a cell's text or a dict): which keys exist
and what each must hold. Reading YAML with its lines, problems and limits is ``_yaml``'s;
the line of every key is kept so that ``validate_config`` can point at it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from ..errors import ConfigError, ConfigProblem
from ._secrets import mask, redact, unwrap_marked
from ._yaml import _FAILED, Reader, _describe, _is_null, _unknown_message

__all__ = ["ConfigDocument", "PluginSpec", "parse_config"]

TOP_KEYS = ("fleet", "gateway", "plugin_dirs", "plugins")
ENTRY_KEYS = ("config", "depends_on", "enabled", "priority", "required", "verify")


@dataclass(repr=False)
class PluginSpec:
    """One plugin's entry in the configuration, with the lines needed to report on it."""

    name: str
    enabled: bool = True
    priority: int | None = None
    depends_on: tuple[str, ...] = ()
    verify: bool = False  # reloads of this plugin are probed through the new chain first
    #: it guards requests: the gateway answers 503 while it is not serving (None: as its
    #: class says; ``false`` cannot relax a class that is required, such as custom-auth)
    required: bool | None = None
    config: dict[str, Any] = field(default_factory=dict)  # raw, env-substituted
    # where it was written: not what it means, so an entry that only moved (a comment
    # added above it, entries reordered) is equal to the old one and reloads nothing
    source: str = field(default="<config>", compare=False)
    line: int | None = field(default=None, compare=False)
    lines: dict[tuple, int] = field(default_factory=dict, compare=False)  # key path -> line
    secrets: frozenset[tuple] = frozenset()  # config paths marked {value: ..., secret: true}

    def __repr__(self) -> str:  # a spec shown in a notebook must not leak its secrets
        return (
            f"PluginSpec(name={self.name!r}, enabled={self.enabled!r}, "
            f"priority={self.priority!r}, depends_on={self.depends_on!r}, "
            f"required={self.required!r}, "
            f"config={mask(redact(self.config, marked=self.secrets))!r}, "
            f"source={self.source!r}, "
            f"line={self.line!r})"
        )


@dataclass(repr=False)
class ConfigDocument:
    """A parsed configuration; ``gateway`` is raw, for the gateway to validate itself."""

    plugins: dict[str, PluginSpec]
    gateway: dict[str, Any]
    source: str
    gateway_lines: dict[tuple, int] = field(default_factory=dict)  # key path -> line
    fleet: dict[str, Any] = field(default_factory=dict)  # raw: helixlab.fleet validates it
    fleet_lines: dict[tuple, int] = field(default_factory=dict)
    plugin_dirs: list[str] = field(default_factory=list)  # absolute: relative to the file

    def __repr__(self) -> str:
        return (
            f"ConfigDocument(plugins={self.plugins!r}, gateway={redact(self.gateway)!r}, "
            f"source={self.source!r})"
        )


def parse_config(
    data: str | os.PathLike | Mapping,
    *,
    source: str | None = None,
    line_offset: int = 0,
    env: Mapping[str, str] | None = None,
    check: Callable[[PluginSpec], Iterable[ConfigProblem]] | None = None,
) -> ConfigDocument:
    """Parse a configuration file, YAML text or mapping into specs, or raise every problem.

    ``check`` is called with each plugin's spec that parsed cleanly and returns further
    problems (an unknown plugin, a config its model refuses), so that they are reported
    together with the parser's, all at once.

    >>> doc = parse_config("plugins:\\n  rate-limiter:\\n    config: {burst_size: 20}\\n")
    >>> doc.plugins["rate-limiter"].config
    {'burst_size': 20}
    """
    content, source = _read_input(data, source)
    reader = _ConfigReader(source, line_offset, os.environ if env is None else env)
    root = reader.read(content)
    doc = None if root is _FAILED else reader.document(root)
    if doc is not None:  # relative to the configuration file (or the working directory)
        base = (
            Path(data).parent
            if isinstance(data, str | os.PathLike) and source != "<config>"
            else Path()
        )
        doc.plugin_dirs = [str((base / d).resolve()) for d in doc.plugin_dirs]
    if doc is not None and check is not None:  # every plugin, a flawed one too: all at once
        for name, spec in doc.plugins.items():
            seen = [p.path for p in reader.problems if p.plugin == name]
            if "" in seen:  # the entry itself is unreadable: nothing more to say about it
                continue
            reader.problems.extend(p for p in check(spec) if not _covers(seen, p.path))
    if reader.problems or doc is None:
        unique = list(dict.fromkeys(reader.problems))
        unique.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(unique, source)
    return doc


def _covers(paths: list[str], path: str) -> bool:
    """Whether a problem at ``path`` was said already (at it, above it or below it)."""
    return any(p == path or path.startswith(p + ".") or p.startswith(path + ".") for p in paths)


def _read_input(data: Any, source: str | None) -> tuple[str | Mapping, str]:
    """Tell a path from YAML text, and read the file, so errors can name it."""
    if isinstance(data, Mapping):
        return data, source or "<config>"
    if isinstance(data, os.PathLike) or (isinstance(data, str) and _looks_like_path(data)):
        path = Path(data)
        source = source or str(path)
        try:
            return path.read_text(encoding="utf-8"), source
        except (OSError, UnicodeDecodeError) as exc:
            problem = ConfigProblem(f"cannot read the configuration file: {exc}", source)
            raise ConfigError([problem], source) from None
    if isinstance(data, str):
        return data, source or "<config>"
    raise TypeError(f"parse_config() takes a path, YAML text or a mapping, not {data!r}")


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and (text.endswith((".yaml", ".yml")) or os.path.isfile(text))


class _ConfigReader(Reader):
    """Reads helixlab's configuration: the document, its plugins and their entries."""

    def __init__(self, source: str, line_offset: int, env: Mapping[str, str]):
        super().__init__(source, line_offset, env)
        self.marked: set[tuple] = set()  # paths written {value: ..., secret: true}

    def document(self, root: yaml.Node | None) -> ConfigDocument | None:
        if root is None or _is_null(root):
            self.report("the configuration is empty; it needs a 'plugins' mapping.", root)
            return None
        if not isinstance(root, yaml.MappingNode):
            self.report(
                f"the configuration must be a mapping with a 'plugins' key, not "
                f"{self.describe(root)}.",
                root,
            )
            return None
        doc = ConfigDocument(plugins={}, gateway={}, source=self.source)
        found = set()
        for key, key_node, value_node in self.items(root, None, (), raw=True):
            found.add(key)
            if key == "plugins":
                doc.plugins = self.plugins(value_node)
            elif key in ("gateway", "fleet"):  # raw: their layers validate them
                lines: dict[tuple, int] = {}
                setattr(doc, key, self.mapping(value_node, None, (key,), lines))
                setattr(doc, f"{key}_lines", {p[1:]: n for p, n in lines.items()})
            elif key == "plugin_dirs":
                what = "'plugin_dirs' must be a list of directories"
                doc.plugin_dirs = self.strings(value_node, None, key, what, _directory_problem)
            else:
                self.report(_unknown_message(key, TOP_KEYS), key_node, path=(key,))
        if "plugins" not in found:
            self.report("the required 'plugins' mapping is missing.", root)
        return doc

    def strings(
        self, node: yaml.Node, plugin: str | None, key: str, what: str, problem: Callable
    ) -> list[str]:
        """The list at ``key`` (``what`` it must be), each item kept unless ``problem(item)``
        says what is wrong with it."""
        if not self.expect(node, yaml.SequenceNode, what, plugin=plugin, path=key):
            return []
        items = []
        for i, item in enumerate(node.value):
            value = self.value(item, plugin, (key, i), {})
            if (message := problem(value)) is None:
                items.append(value)
            else:
                self.report(message, item, plugin=plugin, path=(key, i))
        return items

    def plugins(self, node: yaml.Node) -> dict[str, PluginSpec]:
        specs: dict[str, PluginSpec] = {}
        what = "'plugins' must be a mapping of plugin name to settings"
        if not self.expect(node, yaml.MappingNode, what, path="plugins"):
            return specs
        for name, key_node, value_node in self.items(node, None, ("plugins",), raw=True):
            if not isinstance(name, str) or not name.strip():
                self.report(f"plugin names must be non-empty strings, not {name!r}.", key_node)
                continue
            specs[name] = self.entry(name, key_node, value_node)
        return specs

    def entry(self, name: str, key_node: yaml.Node, node: yaml.Node) -> PluginSpec:
        spec = PluginSpec(name=name, source=self.source, line=self.line(key_node))
        what = f"a plugin's entry must be a mapping of {', '.join(ENTRY_KEYS)} (or empty)"
        if not self.expect(node, yaml.MappingNode, what, plugin=name):
            return spec
        for key, kn, vn in self.items(node, name, (), raw=True):
            if key in ("enabled", "verify", "required", "priority"):
                value = self.value(vn, name, (key,), {}, retype=True)
                if key == "priority":  # an integer (or null), not a bool
                    ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
                    must = "an integer"
                else:
                    ok, must = isinstance(value, bool), "true or false"
                if ok:
                    setattr(spec, key, value)
                else:
                    message = f"{key!r} must be {must}, not {_describe(value)}."
                    self.report(message, vn, plugin=name, path=key)
            elif key == "depends_on":
                what = (
                    "'depends_on' must be a list of plugin names such as "
                    '[rate-limiter, "custom-logger>=1.0"]'
                )
                spec.depends_on = tuple(self.strings(vn, name, key, what, _dependency_problem))
            elif key == "config":
                lines: dict[tuple, int] = {}
                self.marked = set()
                spec.config = self.mapping(vn, name, ("config",), lines)
                spec.lines = {p[1:]: n for p, n in lines.items()}
                spec.secrets = frozenset(p[1:] for p in self.marked)
            else:
                self.report(_unknown_message(key, ENTRY_KEYS), kn, plugin=name, path=(key,))
        return spec

    def finish(self, mapping: dict, path: tuple) -> Any:
        value, marked = unwrap_marked(mapping)
        if marked:  # `{value: ..., secret: true}`: the value, known to be secret
            self.marked.add(path)
        return value


def _directory_problem(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    return f"a plugins directory must be a path, not {_describe(value)}."


def _dependency_problem(dep: Any) -> str | None:
    if not isinstance(dep, str):
        return f"a dependency must be a plugin name, not {_describe(dep)}."
    try:
        Requirement(dep)
    except InvalidRequirement as exc:
        return f"invalid dependency {dep!r}: {exc}; write a name, e.g. 'x' or 'x>=1.0'."
    return None
