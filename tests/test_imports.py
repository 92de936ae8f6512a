"""Imports flow one way, folder by folder; leaves import no torch; no cycles; nothing imports the CLI.

The rule, per folder of src/unetkit (a module may import its own folder and the folders named):

    config, _version    nothing of the package
    io                  nothing of the package
    data                io, config
    model               io, config, data
    inference           io, config, data, model
    metrics             io, config, data, model          (beside inference: neither imports the other)
    training            io, config, data, model, inference, metrics
    demo                ... and training
    export              io, config, data, model, inference     (models for other tools)
    napari              ... and metrics, training, export      (the plugin: on top, beside demo)
    cli                 everything; nothing imports cli (but ``__main__``)

Function-level imports count as imports here, so a lazy import can load a module late (the CLI
does, to start without torch) but cannot dodge a cycle or a rule.
"""

import ast
import subprocess
import sys
from pathlib import Path

import unetkit

PKG = Path(unetkit.__file__).parent
BASE = {"io", "config"}
ALLOWED = {
    "config": set(),
    "_version": set(),
    "io": set(),
    "data": BASE,
    "model": BASE | {"data"},
    "inference": BASE | {"data", "model"},
    "metrics": BASE | {"data", "model"},
    "training": BASE | {"data", "model", "inference", "metrics"},
    "demo": BASE | {"data", "model", "inference", "metrics", "training"},
    "export": BASE | {"data", "model", "inference"},
    "napari": BASE | {"data", "model", "inference", "metrics", "training", "export"},
    "cli": BASE | {"data", "model", "inference", "metrics", "training", "demo", "export",
                   "_version"},
}
for _wing in ALLOWED:
    ALLOWED[_wing] = ALLOWED[_wing] | {"_version"}
# numpy / scipy only: pure geometry apart from tensors, and the metrics where they are today
NO_TORCH = {"config", "_version", "model.geometry", "inference.plan", "inference.instances",
            "inference.blockwise_labels", "data.normalize", "data.targets", "data.synthetic",
            "data.cell_params", "data.optics",
            "demo.report"}
NO_TORCH_FOLDERS = {"io", "metrics"}


def _name(path: Path) -> str:
    """unetkit/inference/plan.py -> 'inference.plan'; unetkit/io/__init__.py -> 'io'."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_name(f): f for f in PKG.rglob("*.py")}


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom, names: set[str]) -> list[str]:
    """Package modules an ``from ... import ...`` statement loads ('' = the package top)."""
    if node.level == 0:
        if not (node.module or "").startswith("unetkit"):
            return []
        base = node.module.split(".")[1:]
    else:
        here = mod.split(".") if mod else []
        base = here if is_pkg else here[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        base = base + (node.module.split(".") if node.module else [])
    out = []
    for alias in node.names:
        sub = ".".join([*base, alias.name])
        out.append(sub if sub in names else ".".join(base))
    return out


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(package imports, third-party top names) of every module, function-level ones included."""
    mods = _modules()
    deps: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        d, e = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0 and not (node.module or "").startswith("unetkit"):
                    e.add(node.module.split(".")[0])
                else:
                    d.update(_resolve(mod, path.name == "__init__.py", node, set(mods)))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "unetkit":
                        d.add(".".join(a.name.split(".")[1:]))
                    else:
                        e.add(a.name.split(".")[0])
        d.discard(mod)
        deps[mod], external[mod] = d, e
    return deps, external


def _wing(mod: str) -> str:
    return mod.split(".")[0]


def test_the_walk_sees_every_folder():
    wings = {_wing(m) for m in _modules() if "." in m}
    assert wings == {"io", "data", "model", "inference", "training", "metrics", "demo", "export",
                     "napari", "cli"}
    top = {m for m in _modules() if "." not in m}
    assert top == {"", "__main__", "_version", "config", *wings}


def test_imports_flow_one_way():
    deps, _ = _graph()
    for mod, targets in deps.items():
        if mod in ("", "__main__"):
            continue
        wing = _wing(mod)
        for t in targets:
            assert t != "", f"{mod} imports the package top (import from the module instead)"
            assert _wing(t) == wing or _wing(t) in ALLOWED[wing], f"{mod} -> {t} runs back up"


def test_nothing_imports_the_cli():
    deps, _ = _graph()
    for mod, targets in deps.items():
        if mod != "__main__" and _wing(mod) != "cli":
            assert not any(_wing(t) == "cli" for t in targets), mod


def test_leaves_do_not_import_torch():
    _, external = _graph()
    checked = {m for m in external if m in NO_TORCH or _wing(m) in NO_TORCH_FOLDERS}
    assert {"inference.plan", "model.geometry", "metrics.isbi", "io.lazy"} <= checked
    for mod in checked:
        assert "torch" not in external[mod], mod


def test_no_cycles():
    deps, _ = _graph()
    graph = {m: set(d) - {""} for m, d in deps.items() if m != ""}
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == "done" or m not in graph:
            return
        assert state.get(m) != "active", " -> ".join([*path, m])
        state[m] = "active"
        for d in graph[m]:
            visit(d, [*path, m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def test_each_wing_lists_its_names():
    # (napari: its __init__ imports nothing, so that npe2 can read the manifest without Qt)
    for wing in ("io", "data", "model", "inference", "training", "metrics", "demo", "export"):
        module = __import__(f"unetkit.{wing}", fromlist=["__all__"])
        assert module.__all__, wing
        for name in module.__all__:
            assert hasattr(module, name), f"unetkit.{wing}.{name}"


def test_core_import_needs_no_dask_or_zarr():
    code = ("import sys; import unetkit; "
            "print(sorted(m for m in ('dask', 'zarr', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
