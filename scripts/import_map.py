"""Print the package's intra-package import map, its cycles and its upward arrows.

An arrow ``a -> b`` means module ``a`` imports module ``b`` (a ``from . import x`` of a
submodule counts as importing that submodule). Arrows made inside a function are marked
``(local)``: they hide a dependency from a reader of the module's header, so they count for
cycles like any other.

A module's layer is its rank in :data:`LAYERS` (the first prefix that matches); an arrow is
*upward* when it goes from a lower layer to a higher one, e.g. a simulator importing the
learner. Package ``__init__`` modules re-export their children and are not ranked.

Usage::

    python scripts/import_map.py            # the map, the cycles, the upward arrows
    python scripts/import_map.py --check    # exit 1 if there is a cycle or an upward arrow
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "dklfm_explore"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "messages", "devices", "runtime", "atomic", "linalg", "quadrature", "version", "config"),
    ("systems",),
    ("spread", "spec", "data", "chunked_netcdf", "simulate", "metrics", "verdict", "result", "standardise", "ood"),
    ("model",),
    ("task_checks", "checkpoint", "trained", "sources", "distributed", "train", "stream", "io", "measurements", "bench", "datasets", "plots", "task_inputs", "design", "refine"),
    ("cli", "ui"),
)
"""Layers from the bottom up, by the module's path below the package (first segment)."""


def module_name(path: Path, root: Path) -> str:
    """Return the dotted name of the module at ``path`` (``__init__`` names its package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(importer: str, package: bool, level: int, target: str | None) -> str:
    base = importer.split(".")
    if not package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


class _Collector(ast.NodeVisitor):
    def __init__(self, importer: str, package: bool, modules: set[str]):
        self.importer, self.package, self.modules = importer, package, modules
        self.depth = 0
        self.arrows: dict[str, bool] = {}

    def _add(self, name: str) -> None:
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        if name and name != self.importer:
            local = self.depth > 0
            self.arrows[name] = self.arrows.get(name, True) and local

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] == PACKAGE:
                self._add(alias.name)

    def visit_ImportFrom(self, node):
        if node.level:
            target = _resolve(self.importer, self.package, node.level, node.module)
        elif node.module and node.module.split(".")[0] == PACKAGE:
            target = node.module
        else:
            return
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            self._add(submodule if submodule in self.modules else target)


def import_map(root: Path) -> tuple[dict[str, dict[str, bool]], set[str]]:
    """Return ``{importer: {imported: only_local}}`` over the package at ``root``, and its packages."""
    paths = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(p, root): p for p in paths}
    packages = {name for name, p in modules.items() if is_package(p)}
    graph = {}
    for name, path in modules.items():
        collector = _Collector(name, is_package(path), set(modules))
        collector.visit(ast.parse(path.read_text(), str(path)))
        graph[name] = collector.arrows
    return graph, packages


def _is_ancestor(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def cycles(graph: dict[str, dict[str, bool]], packages: set[str]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan).

    An arrow from a module to a package that contains it is left out: a child importing a
    sibling through its package is not a cycle between the child and its parent.
    """
    nodes = list(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt in packages and _is_ancestor(nxt, node):
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

    for node in nodes:
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int | None:
    """Return the layer of ``module`` in :data:`LAYERS`, or None for the package itself."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    for rank, names in enumerate(LAYERS):
        if parts[0] in names:
            return rank
    raise SystemExit(f"{module} is in no layer of scripts/import_map.py LAYERS; add it.")


def upward(graph: dict[str, dict[str, bool]], packages: set[str]) -> list[tuple[str, str]]:
    """Return the arrows from a lower layer to a higher one (``__init__`` re-exports excepted)."""
    arrows = []
    for importer, targets in graph.items():
        if importer in packages:
            continue
        low = layer(importer)
        for target in targets:
            high = layer(target)
            if low is not None and high is not None and high > low:
                arrows.append((importer, target))
    return sorted(arrows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--check", action="store_true", help="exit 1 on a cycle or an upward arrow")
    args = parser.parse_args(argv)
    graph, packages = import_map(args.root)
    short = lambda name: name.removeprefix(PACKAGE + ".") or PACKAGE  # noqa: E731
    if not args.check:
        print("# imports (local = only inside a function)")
        for importer in sorted(graph):
            targets = ", ".join(
                short(t) + (" (local)" if local else "") for t, local in sorted(graph[importer].items())
            )
            print(f"{short(importer)} -> {targets or '-'}")
    found = cycles(graph, packages)
    arrows = upward(graph, packages)
    print(f"# cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(map(short, component)))
    print(f"# upward arrows: {len(arrows)}")
    for importer, target in arrows:
        print(f"  {short(importer)} -> {short(target)}")
    return 1 if args.check and (found or arrows) else 0


if __name__ == "__main__":
    sys.exit(main())
