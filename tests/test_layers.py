"""Layers point down: the kernel imports nothing from the layers built on it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "helixlab"
ABOVE = {
    *("notebook", "gateway", "fleet", "cli", "checks", "grading", "testing", "widgets"),
    *("plugins", "llm", "mockllm"),
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
