"""Imports flow one way: nothing imports the CLI, leaves import no torch, no cycles."""

import ast
from pathlib import Path

import unetkit

PKG = Path(unetkit.__file__).parent
NO_TORCH = {"geometry", "io", "normalize", "metrics", "topology", "matching", "instances", "isbi",
            "evaluate", "config", "lazyio", "sinks", "stitch", "report", "targets", "synthetic",
            "partition"}


def _imports():
    graph = {}
    for f in PKG.glob("*.py"):
        tree = ast.parse(f.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("unetkit"):
                deps.add(([*node.module.split("."), ""])[1] or "__init__")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                deps.update("torch" for n in names if n and n.split(".")[0] == "torch")
        graph[f.stem] = deps
    return graph


def test_nothing_imports_the_cli():
    for mod, deps in _imports().items():
        if mod not in ("cli", "__main__"):
            assert "cli" not in deps, mod


def test_leaves_do_not_import_torch():
    graph = _imports()
    for mod in NO_TORCH & set(graph):
        assert "torch" not in graph[mod], mod


def test_no_cycles():
    graph = {m: {d for d in deps if d != "torch"} for m, deps in _imports().items()}
    graph.pop("__init__", None)
    state = {}

    def visit(m, path):
        if state.get(m) == "done" or m not in graph:
            return
        assert state.get(m) != "active", " -> ".join([*path, m])
        state[m] = "active"
        for d in graph[m]:
            visit(d, [*path, m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def test_core_import_needs_no_dask_or_zarr():
    import subprocess
    import sys

    code = ("import sys; import unetkit; "
            "print(sorted(m for m in ('dask', 'zarr', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
