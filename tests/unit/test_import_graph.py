"""The shared package's arrows point one way (docs: ARCHITECTURE.md "Rooms and who may call whom"):
handlers -> areas (batch, evaluation, promotion) -> {record format, adapters} -> core.

Every `import` in layers/shared/python/liteserve is read with ast, at module level and inside functions (lazy imports
and `if TYPE_CHECKING:` blocks are arrows too). A subpackage is one node; each top-level module is a node of its own
(the core is those modules, and `protocols`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tests.support import imported_names

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "shared" / "python" / "liteserve"
AREAS = {"liteserve.batch", "liteserve.evaluation", "liteserve.promotion"}
# The record format, the AWS adapters and their interfaces (ports): below the areas, above the core.
MIDDLE = {"liteserve.records", "liteserve.adapters", "liteserve.ports", "liteserve.registry"}


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = ["liteserve", *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (a submodule's package __init__ included,
    as Python runs it)."""
    return {m for m in imported_names(path, name) if m in known}


def subpackages(root: Path = PACKAGE) -> set[str]:
    """`liteserve.batch`, `liteserve.evaluation`, ...: the package's folders."""
    return {f"liteserve.{p.parent.name}" for p in root.glob("*/__init__.py")}


def unit(module: str, packages: set[str]) -> str:
    """A subpackage's modules are one node (`liteserve.batch`); a top-level module is its own."""
    head = ".".join(module.split(".")[:2])
    return head if head in packages else module


def graph(root: Path = PACKAGE) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(from node, to node) -> the module imports that make that arrow."""
    names = module_names(root)
    packages = subpackages(root)
    edges: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for name, path in names.items():
        for target in imports(name, path, set(names)):
            a, b = unit(name, packages), unit(target, packages)
            if a != b:
                edges[(a, b)].append((name, target))
    return edges


def cycles(edges: dict[tuple[str, str], list]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    nodes = sorted({n for e in edges for n in e})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
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

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def _explain(component: list[str], edges: dict[tuple[str, str], list]) -> str:
    arrows = [f"  {a} -> {b}: {edges[(a, b)]}" for a in component for b in component if (a, b) in edges]
    return " <-> ".join(component) + "\n" + "\n".join(arrows)


def test_no_import_cycle_between_packages():
    """No cycle through a subpackage (batch, evaluation, promotion, protocols): any module arrow that closes one
    fails, named with the imports that make it. A cycle among top-level core modules alone is not a package cycle
    (today one exists: `service` serves `openapi`'s document, and `openapi.main`, its CLI, reads `ServingConfig`)."""
    edges = graph()
    packages = subpackages()
    knots = [c for c in cycles(edges) if packages.intersection(c)]
    assert not knots, "package import cycles:\n" + "\n".join(_explain(c, edges) for c in knots)


def test_arrows_point_from_the_areas_down():
    """The areas import the record format, the adapters and the core, never the other way; the record format and
    the adapters import only the core; the codecs never import the model runner (they see a SignatureSource)."""
    edges = graph()
    wrong = []
    for (a, b), why in sorted(edges.items()):
        if b in AREAS and a not in AREAS:
            wrong.append(f"{a} -> {b} (an area) {why}")
        if b in MIDDLE and a not in AREAS | MIDDLE:
            wrong.append(f"{a} -> {b} (record format / adapters) {why}")
        if a == "liteserve.protocols" and b in {"liteserve.runtime", "liteserve.service"}:
            wrong.append(f"{a} -> {b} (the codecs need no interpreter) {why}")
    assert not wrong, "\n".join(wrong)


def test_the_graph_sees_function_level_imports(tmp_path):
    """A lazy import inside a function closes a cycle as surely as one at the top of a module."""
    pkg = tmp_path / "liteserve"
    for sub in ("a", "b"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from liteserve.b import y\n")
    (pkg / "b" / "y.py").write_text("def f():\n    from liteserve.a.x import g\n")
    edges = graph(pkg)
    assert set(edges) == {("liteserve.a", "liteserve.b"), ("liteserve.b", "liteserve.a")}
    assert cycles(edges) == [["liteserve.a", "liteserve.b"]]
