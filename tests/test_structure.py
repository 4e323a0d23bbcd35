"""The shape of the package: one direction of imports (no module imports one that imports it back,
directly or through others), counted from the source of every module under harness/, imports inside
functions included (they are still dependencies)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harness"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def imports() -> dict[str, set[str]]:
    """harness module -> the harness modules it imports (anywhere in its source)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in modules:
                    found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
        graph[name] = found - {name, "harness"}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circles():
    graph = imports()
    assert "harness.__main__" in graph and graph["harness.__main__"], "the import graph was not read"
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


LONG = 70  # lines of a function above which its docstring must say why it is one function


def test_no_function_runs_past_about_sixty_lines_without_saying_why():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= LONG:
                if "one function because" not in (ast.get_docstring(node) or ""):
                    long.append(f"{module_name(path)}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == [], "split these, or say in the docstring why each is 'one function because ...'"


# What the reporting side (the harness.report package) reads through, besides itself.
SHARED = {"figures", "catalog", "benchcompare", "jobfile", "results", "readable", "stats", "tuning", "convergence",
          "files", "hardware"}
# The run side: what trains, measures and evaluates a model.
RUNNERS = {"runner", "worker", "train", "trackers", "callbacks", "models", "artifacts", "evaluate", "forgetting",
           "devices", "ray_executor", "flops", "environment", "serving"}


def short(module: str) -> str:
    return module.removeprefix("harness.")


def test_the_reporting_side_reaches_the_run_side_only_through_the_method_registrys_hooks():
    """A module of harness.report (or one it reads through) imports no module that trains or measures,
    and reaches one only through methods.py, whose entries carry the hooks that the worker calls
    (attach, AdaLoRA's allocator, PiSSA's initial adapter); with those edges taken away, no run-side
    module is reachable."""
    graph = imports()
    graph["harness.methods"] = {w for w in graph["harness.methods"] if short(w) not in RUNNERS}
    modules = {short(m) for m in graph}
    assert SHARED <= modules and RUNNERS <= modules, sorted((SHARED | RUNNERS) - modules)
    readers = {m for m in graph if m.startswith("harness.report")} | {f"harness.{m}" for m in SHARED}
    assert len(readers) > len(SHARED) + 10, "the report package was not read"
    reached = {}
    for reader in readers:
        seen, stack = set(), [reader]
        while stack:
            for w in graph.get(stack.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    stack.append(w)
        bad = sorted(short(w) for w in seen if short(w) in RUNNERS)
        if bad:
            reached[short(reader)] = bad
    assert reached == {}
