"""The shape of state_ext/ that issue 12 asks for, checked on every run.

* **No import circle**, counting imports inside functions too: a module that needs another
  lazily still depends on it, and a circle means neither can be understood (or moved) alone.
* **Nothing runs back up the layers**: the backends, the model and the settings never import
  the engines above them (operations, transfer, safety) or the CLI; only ``main.py`` joins
  the CLI and the EDK extension.
* **Small modules**: none over ``LIMIT`` lines, so each can be read in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "state_ext"
LIMIT = 300
# Layers, lowest first: a module may import its own layer and the ones below it.
LOWER = ("state_ext.backends", "state_ext.model", "state_ext.settings", "state_ext.errors",
         "state_ext.redact", "state_ext.state_ids", "state_ext.strict_json", "state_ext.logs")
UPPER = ("state_ext.cli", "state_ext.main", "state_ext.extension", "state_ext.operations",
         "state_ext.transfer", "state_ext.restore", "state_ext.guard", "state_ext.snapshot")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every state_ext module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    found.add(target)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(start: str) -> None:
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return found


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_even_inside_functions():
    assert circles(graph()) == []


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") or name.startswith(p + "_")
               for p in prefixes)


def test_lower_layers_never_import_upper_ones():
    upward = sorted(f"{name} -> {target}" for name, targets in graph().items()
                    if _within(name, LOWER) for target in targets if _within(target, UPPER))
    assert upward == []


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(PACKAGE.parent)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > LIMIT}
    assert long == {}
