"""The layers hold: no import cycle, the import-linter contracts of
pyproject.toml kept, and modules use each other only through public names.

Every module under analysis/ and instruments/ is parsed with ``ast``; a private
name (one leading underscore, not a dunder) may be used only in the module that
defines it. Three ways of reaching into another module are found:

* ``from X import _name`` (or ``from . import _module``);
* ``X._name`` where ``X`` is an imported module;
* ``obj._name`` where this module defines no ``_name`` (no function, class,
  assignment or attribute of that name) but another module of the suite does:
  reading another module's object internals (e.g. ``model._g``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analysis", "instruments")

# Known exceptions, to shrink to nothing: (module, private name).
ALLOWED = {
    # python-docx has no public API for a paragraph's or run's direction (w:bidi, w:rtl)
    ("instruments/export_paper.py", "_p"),
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _modules() -> dict[str, ast.Module]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            out[rel] = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    return out


def _defined_names(tree: ast.Module) -> set[str]:
    """Every name a module defines: functions, classes, assignments, attributes it sets,
    parameters and keyword names of its own calls."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return names


def _owned_names(tree: ast.Module) -> set[str]:
    """The names a module owns for others to reach: its functions, classes, module-level
    assignments and the attributes it sets on objects (not local variables)."""
    names = {node.name for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names |= {node.attr for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _module_aliases(tree: ast.Module) -> set[str]:
    """Local names bound to modules by ``import X`` / ``import X as Y``."""
    return {alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def offenders() -> list[tuple[str, str, str]]:
    """(module, private name, where and how) of every private name used outside its module."""
    modules = _modules()
    defined = {rel: _defined_names(tree) for rel, tree in modules.items()}
    owners: dict[str, set[str]] = {}
    for rel, tree in modules.items():
        for name in _owned_names(tree):
            owners.setdefault(name, set()).add(rel)
    found = []
    for rel, tree in modules.items():
        mine = defined[rel]
        aliases = _module_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if _private(alias.name):
                        found.append((rel, alias.name, f"{rel}:{node.lineno}: from "
                                      f"{'.' * node.level}{node.module or ''} import {alias.name}"))
            elif isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.ctx, ast.Load):
                base = node.value.id if isinstance(node.value, ast.Name) else None
                if base in aliases:
                    found.append((rel, node.attr, f"{rel}:{node.lineno}: {base}.{node.attr}"))
                elif base not in ("self", "cls") and node.attr not in mine and owners.get(node.attr, set()) - {rel}:
                    found.append((rel, node.attr, f"{rel}:{node.lineno}: .{node.attr} (another module's)"))
    return found


def test_no_private_name_is_used_across_modules():
    found = [where for module, name, where in offenders() if (module, name) not in ALLOWED]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_the_allow_list_only_shrinks():
    used = {(module, name) for module, name, _ in offenders()}
    stale = sorted(ALLOWED - used)
    assert not stale, f"no longer needed, remove from ALLOWED: {stale}"


def import_graph() -> dict[str, set[str]]:
    """module -> the suite's modules it imports (also inside functions), as import-linter sees it."""
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_layer_contracts_are_kept():
    from click.testing import CliRunner
    from importlinter.cli import lint_imports_command

    result = CliRunner().invoke(lint_imports_command, ["--config", str(ROOT / "pyproject.toml"), "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "0 broken" in result.output
