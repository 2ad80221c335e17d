"""Dependencies run one way: layers < models < checkpoint < registry < processing / diffusion < data < inference <
train < (export, serve) < cli. Every import inside vitkit (module level or inside a function) is read from the
source; an import of a higher layer, a cycle between modules, or another module's `_private` name fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vitkit

PKG = Path(vitkit.__file__).parent

# Lowest first. A module may import from its own layer or any lower one. Top-level modules and packages of
# vitkit not named here fail the test (a new one must be placed).
LAYERS: list[set[str]] = [
    {"errors", "config", "utils"},
    {"layers"},
    {"models"},
    {"checkpoint"},
    {"registry"},
    {"processing", "diffusion"},
    {"data"},
    {"inference"},
    {"train"},
    {"export", "serve"},
    {"cli", "demo", "__init__", "__main__"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def vitkit_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import of a vitkit module in the file."""
    mod, tree = module_name(path), ast.parse(path.read_text())
    here = mod.split(".") if is_package(path) else mod.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "vitkit" or target.startswith("vitkit."):
                found.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("vitkit.")]
    return found


def resolve_module(target: str, names: list[str], modules: set[str]) -> list[str]:
    """The modules an import statement loads: `from pkg import sub` loads pkg.sub when that is a module."""
    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return subs or [target]


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


FILES = sorted(PKG.rglob("*.py"))
MODULES = {module_name(p) for p in FILES}


def test_every_top_level_module_has_a_layer():
    unplaced = sorted({top(m) for m in MODULES} - set(RANK))
    assert not unplaced, f"place these in LAYERS: {unplaced}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_imports_go_down(path):
    mod = module_name(path)
    upward = []
    for target, names, line in vitkit_imports(path):
        for dep in resolve_module(target, names, MODULES):
            if RANK[top(dep)] > RANK[top(mod)]:
                upward.append(f"line {line}: {dep} (layer {RANK[top(dep)]}) from layer {RANK[top(mod)]}")
    assert not upward, f"{mod} imports upward:\n" + "\n".join(upward)


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_no_private_names_from_other_modules(path):
    mod = module_name(path)
    bad = [f"line {line}: {n} from {target}" for target, names, line in vitkit_imports(path)
           for n in names if n.startswith("_") and not n.startswith("__") and target != mod]
    assert not bad, f"{mod} imports private names of other modules (make them public or move the code):\n" + \
        "\n".join(bad)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for path in FILES:
        mod = module_name(path)
        for target, names, _ in vitkit_imports(path):
            graph[mod].update(d for d in resolve_module(target, names, MODULES) if d != mod and d in MODULES)
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles[:20])
