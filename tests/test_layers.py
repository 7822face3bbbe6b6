"""Layers point down: the kernel imports nothing from the layers built on it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "helixlab"
ABOVE = {
    *("notebook", "gateway", "fleet", "cli", "checks", "grading", "testing", "widgets"),
    *("plugins", "llm", "mockllm", "sources"),
}
KERNEL_SIDE = [
    *sorted((PACKAGE / "kernel").glob("*.py")),
    PACKAGE / "errors.py",
    PACKAGE / "_reprs.py",
]


def imported(source: str, package: list[str]) -> set[str]:
    """Every helixlab module ``source`` imports, relative imports resolved, lazy ones included."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("helixlab")}


def test_the_kernel_imports_nothing_from_the_layers_built_on_it():
    reaching_up = {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in KERNEL_SIDE
        for name in imported(
            path.read_text(), ["helixlab", *path.parent.relative_to(PACKAGE).parts]
        )
        if name.partition(".")[2].split(".")[0] in ABOVE
    }
    assert not reaching_up


def test_the_rule_sees_lazy_and_relative_imports():
    source = "import helixlab.fleet\ndef serve():\n    from ..gateway import serve\n"
    assert imported(source, ["helixlab", "kernel"]) >= {"helixlab.fleet", "helixlab.gateway"}


OUTSIDE = sorted(p for p in PACKAGE.rglob("*.py") if "kernel" not in p.relative_to(PACKAGE).parts)


def _package_of(path: Path) -> list[str]:
    return ["helixlab", *path.parent.relative_to(PACKAGE).parts]


def private_kernel_modules(source: str, package: list[str]) -> set[str]:
    """The ``helixlab.kernel._*`` modules ``source`` imports (relative, absolute, lazy)."""
    return {
        ".".join(parts[:3])
        for parts in (name.split(".") for name in imported(source, package))
        if parts[:2] == ["helixlab", "kernel"]
        and len(parts) > 2
        and parts[2].startswith("_")
        and not parts[2].startswith("__")
    }


def private_kernel_attributes(source: str) -> set[str]:
    """Every ``kernel._x`` / ``self.kernel._x`` / ``self._kernel._x`` read or written."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
        if name in ("kernel", "_kernel"):
            found.add(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_nothing_outside_the_kernel_imports_its_private_modules():
    reaching_in = {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in OUTSIDE
        for name in private_kernel_modules(path.read_text(), _package_of(path))
    }
    assert not reaching_in


def test_nothing_outside_the_kernel_touches_a_kernels_private_state():
    reaching_in = {
        f"{path.relative_to(PACKAGE.parent)}: {found}"
        for path in OUTSIDE
        for found in private_kernel_attributes(path.read_text())
    }
    assert not reaching_in


def test_the_rules_see_every_form_of_reaching_in():
    source = (
        "import helixlab.kernel._yaml\n"
        "from ..kernel import _discovery, Kernel\n"
        "def f():\n"
        "    from ..kernel._secrets import mask\n"
        "    from helixlab.kernel import __version__\n"
    )
    assert private_kernel_modules(source, ["helixlab", "gateway"]) == {
        "helixlab.kernel._yaml",
        "helixlab.kernel._discovery",
        "helixlab.kernel._secrets",
    }
    source = "kernel._thread.run(x)\nself.kernel._registry = r\nkernel.__class__\nkernel.run(x)\n"
    assert private_kernel_attributes(source) == {
        "kernel._thread (line 1)",
        "self.kernel._registry (line 2)",
    }


def test_no_module_is_over_500_lines():
    """One concept per module: none grows past 500 lines (issue 22)."""
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 500
    }
    assert not long


def test_the_kernel_stays_compact():
    """A compact kernel a learner can read (issue 22): at most 5,000 lines in all."""
    lines = sum(len(p.read_text().splitlines()) for p in (PACKAGE / "kernel").glob("*.py"))
    assert lines <= 5_000, lines
