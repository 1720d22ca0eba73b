"""The dependency rule, read from the source: which module imports which, lazy imports included.

``detection/`` and ``zoom_chain/`` build on ``cotrain``; ``cotrain`` never imports them (it reaches
them through entry points, cotrain/plugins.py). No import cycle anywhere: a module pair that
needs each other is one concept split in the wrong place. ``__init__`` re-exports count as an
import of the package, not of each module above it, so a package may list its own modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cotrain", "detection", "zoom_chain")
FORBIDDEN = {"cotrain": ("detection", "zoom_chain")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules that ``path`` imports anywhere in its body (top level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` where c is a name: the module a.b
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cotrain_never_imports_the_packages_built_on_it():
    bad = [f"{mod} imports {dep}" for mod, deps in sorted(import_graph().items()) for dep in sorted(deps)
           for pkg, banned in FORBIDDEN.items()
           if mod.split(".")[0] == pkg and dep.split(".")[0] in banned]
    assert not bad, "cotrain must not import detection/ or zoom_chain/ (use cotrain/plugins.py):\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles (move the shared part to one module):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_walker_sees_lazy_imports_and_cycles(tmp_path):
    """The checks can fail: a lazy import inside a function is an edge, and a 2-cycle is found."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from pkg.b import g\n    return g\n")
    assert _imports(a, "pkg.a", {"pkg.a", "pkg.b"}) == {"pkg.b"}
    assert _cycles({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}) == [["pkg.a", "pkg.b"]]
