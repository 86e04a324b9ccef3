"""The package graph, read from the source's own import statements (nothing is imported here).

ARCHITECTURE.md fixes the direction of dependencies; these tests hold the parts of it that a
quick edit breaks without noticing: a circle of imports, the firmware library reaching into the
control plane, or the library reaching into its own command line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("firmware_tools", "server", "simulator", "gateway", "tools")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every first-party module `module` imports, at any depth (function bodies and
    TYPE_CHECKING blocks too: a circle there still couples the two files)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the module pkg.mod when there is one.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            known = name
            while known and known not in MODULES:
                known = known.rpartition(".")[0]
            if known and known != module:
                yield known


GRAPH = {module: set(_imported(module, path)) for module, path in MODULES.items()}


def _is_parent(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring the implicit
    edge from a package's __init__ to its own submodules (that is how packages re-export)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if _is_parent(node, nxt) or _is_parent(nxt, node):
                continue
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

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_the_graph_is_read_from_the_source() -> None:
    # Guards the reader itself: a parser that saw no imports would pass every test below.
    assert "firmware_tools.storage" in GRAPH["firmware_tools.s3"]
    assert "firmware_tools.cli.commands" in GRAPH["firmware_tools.cli.main"]
    assert "firmware_tools.s3" in GRAPH["server.firmware.s3"]


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert _cycles() == []


def test_the_firmware_library_imports_neither_the_server_nor_its_own_cli() -> None:
    library = [m for m in GRAPH if m.startswith("firmware_tools") and not m.startswith("firmware_tools.cli")]
    library.remove("firmware_tools.__main__")  # the entry point runs the CLI, by definition
    outside = [n for n in GRAPH if not n.startswith("firmware_tools") or n.startswith("firmware_tools.cli")]
    wrong = {module: sorted(GRAPH[module] & set(outside)) for module in library}
    assert {m: n for m, n in wrong.items() if n} == {}
