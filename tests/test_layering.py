"""The import rule of docs/architecture.md: one direction between layers, no cycles between modules.

Every module of the pack is parsed with ``ast``; every ``import`` counts, including those made
inside functions. A module's layer is its top-level package, so new modules are judged by the
folder they live in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACK_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "refvideo"
# Lower layers first; a module may import its own layer and the layers below it.
LAYERS = ("engine", "models", "jobs", "nodes", "headless")
# The two root modules: what ComfyUI loads (the nodes) and ``python -m refvideo`` (the CLI).
ROOT_MAY_IMPORT = {"refvideo": {"nodes"}, "refvideo.__main__": {"headless"}}
COMFYUI_MODULES = ("folder_paths", "comfy", "comfy_api", "comfy_execution", "server", "execution")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACK_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def pack_modules() -> dict[str, Path]:
    files = [PACK_ROOT / "__init__.py", PACK_ROOT / "__main__.py"]
    for layer in LAYERS:
        files += sorted((PACK_ROOT / layer).rglob("*.py"))
    return {module_name(p): p for p in files}


MODULES = pack_modules()


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """``(module, line)`` for every pack module ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # "from package import module" imports that module
                candidate = f"{source}.{alias.name}"
                found.append((candidate if candidate in MODULES else source, node.lineno))
    return [(target, line) for target, line in found if target == PACKAGE or target.startswith(PACKAGE + ".")]


def layer_of(name: str) -> str:
    return name.split(".")[1] if name.count(".") >= 1 and name.split(".")[1] in LAYERS else name


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_every_module_lives_in_a_layer():
    assert {layer_of(m) for m in MODULES} <= set(LAYERS) | set(ROOT_MAY_IMPORT)
    assert len(MODULES) > 60  # the walk found the pack


def test_imports_go_down_the_layers_only():
    wrong = []
    for name, targets in GRAPH.items():
        own = layer_of(name)
        for target, line in targets:
            other = layer_of(target)
            if own in ROOT_MAY_IMPORT:
                allowed = other in ROOT_MAY_IMPORT[own]
            else:
                allowed = other in LAYERS and LAYERS.index(other) <= LAYERS.index(own)
            if not allowed:
                wrong.append(f"{MODULES[name].relative_to(PACK_ROOT)}:{line} imports {target} ({own} -> {other})")
    assert wrong == [], "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, ()):
                    groups.append(sorted(group))
    return groups


def test_no_module_import_cycles():
    graph = {name: {t for t, _ in targets if t in MODULES and t != name} for name, targets in GRAPH.items()}
    assert strongly_connected(graph) == []


@pytest.mark.parametrize("graph, cycles", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ({"a": {"a"}}, [["a"]]),
])
def test_the_cycle_finder_finds_cycles(graph, cycles):
    assert strongly_connected(graph) == cycles


def test_only_the_host_adapter_imports_comfyui():
    offenders = []
    for name, path in MODULES.items():
        if name == f"{PACKAGE}.engine.host":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{name}:{node.lineno} {n}" for n in names if n.split(".")[0] in COMFYUI_MODULES]
    assert offenders == []
