"""The floor plan's rules, checked on the source itself (ast, nothing imported):

- ``wan/`` never imports ComfyUI (it is a plain PyTorch library);
- no import cycle between modules of ``wan/`` (every import counted, top-level or not);
- a module imports its siblings at the top: imports inside functions are only for optional
  third-party packages (and ComfyUI in ``nodes/``), never of ``wan`` itself;
- no module over 400 lines in ``wan/``, ``nodes/``, ``scripts/`` and ``bench/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


WAN = _modules(REPO / "wan")


def _target(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (``from .a import b`` inside wan.x -> wan.a)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path):
    """(imported wan module, lineno, at top level?) for every import of a wan module in ``path``."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            target = _target(module, path, node)
            for alias in node.names:  # ``from . import x`` imports the module wan.<pkg>.x
                sub = f"{target}.{alias.name}"
                names.append(sub if sub in WAN else target)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "wan" or name.startswith("wan."):
                yield name, node.lineno, id(node) in top


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m, p) if t in WAN and t != m} for m, p in WAN.items()}


def test_wan_never_imports_comfyui():
    offenders = []
    for module, path in WAN.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{module}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("comfy", "comfy_extras", "folder_paths", "nodes", "server")]
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk, as the path that closes it (empty: no cycle)."""
    state: dict[str, int] = {}
    found = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                path = stack + [node]
                found.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_cycle_in_wan():
    cycles = _cycles(_graph())
    assert cycles == [], "\n".join(cycles)


def test_cycle_check_sees_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_siblings_are_imported_at_the_top():
    lazy = [f"{m}:{line} imports {t}" for m, p in WAN.items() for t, line, top in _imports(m, p) if not top]
    assert lazy == [], "\n".join(lazy)


@pytest.mark.parametrize("folder", ["wan", "nodes", "scripts", "bench"])
def test_no_module_over_400_lines(folder):
    long = [f"{p.relative_to(REPO)}: {n}" for p in sorted((REPO / folder).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert long == []


def test_test_file_names_are_unique():
    """Test folders have no __init__.py, so pytest imports each test file by its bare name: two files
    of one name in different folders would collide."""
    names: dict[str, list[str]] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
