"""The house rules on imports, read off the source: no import cycle between modules or between the
package's subpackages, and no private name imported from another subpackage."""

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> package name (pyproject's package-dir)
PACKAGES = {
    "circuitkg": "circuitkg",
    "compilers": "circuitkg.compilers",
    "constraints": "circuitkg.constraints",
}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def _imports(tree: ast.Module) -> list[ast.ImportFrom]:
    """Top-level ``from circuitkg... import`` statements (imports inside functions are deferred
    on purpose and do not make a cycle at import time)."""
    return [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("circuitkg")
    ]


def _subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_between_modules_or_subpackages():
    modules = _modules()
    assert len(modules) > 100  # the walk found the package
    graph, packages = nx.DiGraph(), nx.DiGraph()
    for name, tree in modules.items():
        for node in _imports(tree):
            graph.add_edge(name, node.module)
            if _subpackage(name) != _subpackage(node.module):
                packages.add_edge(_subpackage(name), _subpackage(node.module))
    module_cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert module_cycles == []
    assert list(nx.simple_cycles(packages)) == []


def test_no_private_names_imported_across_subpackages():
    offenders = [
        f"{name} imports {alias.name} from {node.module}"
        for name, tree in _modules().items()
        for node in _imports(tree)
        for alias in node.names
        if alias.name.startswith("_") and _subpackage(name) != _subpackage(node.module)
    ]
    assert offenders == []
