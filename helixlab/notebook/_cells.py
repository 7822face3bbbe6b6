"""``%%helix plugin`` and ``%%helix config`` cells, and autoreload of ordinary cells.

A plugin cell runs like any cell (its classes and helpers land in the notebook's
namespace), then hands the Plugin classes it defined to ``Kernel.define``: new ones are
registered and loaded, changed ones hot reloaded with their dependents, unchanged ones
left alone. A syntax error is reported before anything runs; an exception while running
the cell or a failed reload leaves the old versions serving, and the names the cell
rebound as they were (a helper it redefined is the old one again: the old instances call
it); names it added stay, for the learner to inspect. A reload interrupted after its swap
serves the new versions: the cell's names stay, and the definition is the accepted one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import HelixError, RegistryError, ReloadInterrupted
from ..kernel import Fingerprint, Plugin
from ..sources import Reach, plugin_classes, reaches
from ._session import Refusal

__all__ = ["config_cell", "plugin_cell", "set_autoreload"]

_HOOK = "__helix_autoreload__"
_MISSING = object()


def _class_names(tree: ast.Module) -> list[str]:
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def _prints(
    classes: Iterable[type[Plugin]], reach: Mapping[str, Reach], namespace: Mapping[str, Any]
) -> dict[str, Fingerprint]:
    """Each plugin's fingerprint: the code of the cell it reaches, and the values it uses
    from other cells (a class the cell did not define at its top level: Kernel.define's own)."""
    return {
        cls.name: reach[cls.__qualname__].fingerprint(namespace).with_values(cls)
        for cls in classes
        if cls.__qualname__ in reach and namespace.get(cls.__qualname__) is cls
    }


def plugin_cell(session: Any, cell: str, options: str = "") -> Any:
    __tracebackhide__ = True  # an exception in the cell shows the cell's frames, not ours
    try:
        return _plugin_cell(session, cell, options)
    finally:
        session.plugin_cell_ran()  # whatever happened: a live check panel looks again


def _plugin_cell(session: Any, cell: str, options: str) -> Any:
    __tracebackhide__ = True
    shell = session.shell
    label = session.cell_label
    # lines as the learner sees them: `%%helix plugin` is line 1, so tracebacks point at
    # the cell's own line numbers and show its text
    header = f"%%helix plugin {options}".rstrip()
    filename = shell.compile.cache(f"{header}\n{cell}", session.execution_count)
    try:
        tree = ast.parse(cell, filename=label)  # a SyntaxError here changes nothing
    except SyntaxError as exc:
        line = (exc.lineno or 0) + 1
        end = (exc.end_lineno or line - 1) + 1
        error = SyntaxError(
            f"{exc.msg}; nothing was changed, the running versions keep serving",
            (filename, line, exc.offset, exc.text, end, exc.end_offset),
        )
        error.helixlab_cell = True  # type: ignore[attr-defined]  # shown as the user's error, without helixlab's frames
        raise error from None
    ast.increment_lineno(tree, 1)
    names = _class_names(tree)
    # dont_inherit: the cell must not get this module's `from __future__ import annotations`
    code = compile(tree, filename, "exec", dont_inherit=True)
    # what the cell binds is put back if it does not run: the old instances keep calling
    # the helpers they were written against, and the notebook holds what runs
    before = dict(shell.user_ns)
    served = False  # interrupted after its swap: the new versions serve all the same
    try:
        exec(code, shell.user_ns)
        classes = plugin_classes(shell.user_ns.get(n) for n in names)
        session.cell_classes = {cls.name: cls.__qualname__ for cls in classes}
        for cls in classes:
            session.definitions[cls.name] = (code, tuple(names))
        if not classes:  # a HelixError, so it is shown plainly, without helixlab's frames
            raise RegistryError(
                f"{label} defines no Plugin subclass with a `name`; a %%helix plugin cell "
                f'defines classes such as `class Greeter(helixlab.Plugin): name = "greeter"`.'
            )
        prints = _prints(classes, reaches(tree, names), shell.user_ns)
        try:
            with session.plugin_output():
                report = session.kernel.define(
                    classes, source=label, origin="cell", unit=session.cell_id, fingerprints=prints
                )
        except (HelixError, ReloadInterrupted) as exc:
            served = isinstance(exc, ReloadInterrupted) and not exc.rolled_back
            if not served:  # the checks look at this definition first, and say it was refused
                for cls in classes:
                    session.refused[cls.name] = Refusal(cls, label, str(exc))
            raise
    except BaseException:
        if served:  # its names stay: the new instances call them
            _accept(session, classes)
        else:
            _put_back(shell.user_ns, before)
        raise
    _accept(session, classes)
    return report


def _accept(session: Any, classes: Iterable[type[Plugin]]) -> None:
    for cls in classes:
        session.refused.pop(cls.name, None)
        session.accepted[cls.name] = session.definitions[cls.name]


def _put_back(namespace: dict[str, Any], before: Mapping[str, Any]) -> None:
    """Rebind what the cell rebound to its value before (names it added stay, to inspect)."""
    for name, value in before.items():
        if namespace.get(name, _MISSING) is not value:
            namespace[name] = value


def config_cell(session: Any, cell: str) -> Any:
    """Apply the cell's YAML; problems are reported with lines counted from the cell's top."""
    from ._displays import Text

    with session.plugin_output():
        reports = session.kernel.apply_config(cell, source=session.cell_label, line_offset=1)
    if reports:
        return reports[0] if len(reports) == 1 else Text("\n".join(map(str, reports)))
    names = ", ".join(sorted(_configured_names(cell))) or "nothing"
    return Text(f"configured: {names}")


def _configured_names(cell: str) -> list[str]:
    import yaml

    data = yaml.safe_load(cell) or {}
    plugins = data.get("plugins") if isinstance(data, dict) else None
    return list(plugins) if isinstance(plugins, dict) else []


# -- autoreload ------------------------------------------------------------------------


class _Autoreload(ast.NodeTransformer):
    """Adds ``__helix_autoreload__([...class names...])`` to cells that define classes.

    The call goes before a final expression (so the cell still shows its value) and runs
    inside the cell, so a failed reload is the cell's own error.
    """

    def visit_Module(self, node: ast.Module) -> ast.Module:
        names = _class_names(node)
        if not names:
            return node
        # what each class reaches in this cell, taken now (before the hook is added)
        found = tuple(r.as_constant() for r in reaches(node, names).values())
        hook = ast.Name(_HOOK, ast.Load())
        call = ast.Expr(ast.Call(hook, [ast.Constant(found)], []))  # type: ignore[arg-type]
        at = len(node.body) - 1 if isinstance(node.body[-1], ast.Expr) else len(node.body)
        node.body.insert(at, call)
        return ast.fix_missing_locations(node)


def set_autoreload(session: Any, on: bool) -> None:
    shell = session.shell
    shell.ast_transformers[:] = [
        t for t in shell.ast_transformers if not isinstance(t, _Autoreload)
    ]
    shell.user_ns.pop(_HOOK, None)
    session.autoreload = on
    if not on:
        return

    def autoreload(found: tuple) -> None:
        kernel = session.kernel
        reach = {r.name: r for r in map(Reach.from_constant, found)}
        classes = [
            cls
            for cls in plugin_classes(shell.user_ns.get(n) for n in reach)
            if cls.name in kernel and kernel.plugin_class(cls.name) is not cls
        ]
        if not classes:
            return
        report = kernel.define(
            classes,
            source=session.cell_label,
            origin="cell",
            fingerprints=_prints(classes, reach, shell.user_ns),
        )
        if report.order or report.loaded:
            print(report)

    shell.user_ns[_HOOK] = autoreload
    shell.ast_transformers.append(_Autoreload())
