"""The package's imports point one way, down the layers, and nodes never compare policy names.

Every `import` of the project in `arbitrage/` (function-level ones included) is read with
ast, so a lazy import that goes back up a layer fails here too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "arbitrage"

# Top-level parts of the package, lowest first; a part may import its own layer or lower.
LAYERS = [
    {"errors", "protocols", "policies", "config", "cli_support", "lab"},
    {"servers"},
    {"graph"},
    {"solver"},
    {"eval"},
    {"router", "agents"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports (a `from package import name` counts as the
    module `package.name` when that is one)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("arbitrage"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.startswith("arbitrage"):
                for alias in node.names:
                    child = f"{source}.{alias.name}"
                    found.add(child if child in modules else source)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): project_imports(path, modules) - {module_name(path)} for path in paths}


def top_part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def part_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = defaultdict(set)
    for module, imported in graph.items():
        for other in imported:
            if top_part(module) != top_part(other):
                parts[top_part(module)].add(top_part(other))
    return parts


def layer_of(part: str) -> int:
    for level, members in enumerate(LAYERS):
        if part in members:
            return level
    raise AssertionError(f"arbitrage.{part} is in no layer of tests/test_import_layers.py; add it to LAYERS")


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_top_level_parts():
    assert cycles(part_graph(import_graph())) == []


def test_every_import_points_down_the_layers():
    upward = [
        f"{module} -> {other}"
        for module, imported in import_graph().items()
        for other in imported
        if layer_of(top_part(other)) > layer_of(top_part(module))
    ]
    assert upward == []


def test_the_checker_finds_a_cycle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("servers") < layer_of("graph")  # servers importing graph would be upward


POLICY_NAMES = {"arbitrage", "rsd", "oracle", "draft_only", "target_only", "generate"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "graph").rglob("*.py")), ids=lambda p: p.name)
def test_graph_code_never_compares_policy_names(path):
    """Nodes and edges read the Policy's flags; which names exist is arbitrage/policies.py's business."""
    compared = [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare)
        for operand in [node.left, *node.comparators]
        if isinstance(operand, ast.Constant) and operand.value in POLICY_NAMES
        or isinstance(operand, (ast.Tuple, ast.List, ast.Set))
        and any(isinstance(e, ast.Constant) and e.value in POLICY_NAMES for e in operand.elts)
    ]
    assert compared == []
