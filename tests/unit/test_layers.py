"""The package's floors only look down, and no two modules import each other (even lazily).

Read from the source (every `import`, including those inside functions), so a shortcut that
reaches up a floor fails here before it tangles the stages of the data flow.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "jukelite"

# Each top-level module or folder of jukelite, by floor: a unit imports only lower floors.
FLOORS = {
    "fileio": 0, "strict_config": 0, "logs": 0,
    "audio": 1,
    "data": 2, "vqvae": 2,
    "prior": 3,
    "bundle": 4, "recipes": 4,
    "train": 5, "inference": 5, "convert": 5,
    "api": 6,
    "jukelite": 6.5,  # the package itself re-exports the API
    "evaluation": 7, "bench": 7,
    "cli": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            graph[source].update(n for n in names if n.split(".")[0] == "jukelite")
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in targets if t in modules and t != m} for m, targets in graph.items()}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "jukelite"


def test_every_unit_has_a_floor():
    assert {unit(m) for m in import_graph()} <= set(FLOORS)


def test_floors_only_look_down():
    upward = sorted(
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        for target in targets
        if unit(source) != unit(target) and FLOORS[unit(target)] >= FLOORS[unit(source)]
    )
    assert upward == []


def test_no_import_cycles():
    graph = import_graph()
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
