"""The shape of the package: layers, import arrows, module sizes.

docs/architecture.md describes the layers; these tests keep the code to it:
module-level imports point down (or sideways without cycles), every module
imports first in a fresh interpreter, and no module grows past about 600
lines.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fastem

PKG = Path(fastem.__file__).resolve().parent
ROOT = PKG.parent

#: Layers from the bottom; a module may import (at module level) only from
#: its own layer or below.  Sub-packages count as their top-level name.
LAYERS = [
    ["_constants", "_announce", "_argtypes", "_progress", "_suffstats", "_variational",
     "_threads", "_kernels", "datasets"],                     # kernels, statistics, constants
    ["_estep", "_initstats", "_missing", "_validation", "io"],  # engine, validation, sources
    ["_data", "_dask"],                          # the data interface
    ["_init", "_em"],                            # the EM driver and initialisation
    ["mixture", "online", "bayesian", "bayesian_online"],  # the estimators
    ["_compile", "_search", "_bayes_search", "selection", "anomaly", "plot", "persist", "cli", "bench",
     "__init__", "__main__"],                                # the edges
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}

#: Upward imports allowed inside functions (at call time), with the reason.
UPWARD_AT_CALL_TIME = {
    ("mixture", "persist"): "the save() convenience method delegates to fastem.persist",
}

MAX_LINES = 650  # "about 600"


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _top(modname):
    parts = modname.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(modname, is_pkg, node):
    """The fastem modules a (relative or absolute) import statement names."""
    out = []
    if isinstance(node, ast.Import):
        out = [a.name for a in node.names if a.name.startswith("fastem")]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = modname.split(".")
            base = base if is_pkg else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.startswith("fastem"):
            out = [f"{target}.{a.name}" for a in node.names]
    return [m for m in out if m.startswith("fastem")]


def _imports():
    """(module, imported fastem module, at module level?) for every import."""
    edges = []
    for modname, path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                at_module_level = _is_module_level(tree, node)
                for target in _resolve(modname, is_pkg, node):
                    edges.append((modname, target, at_module_level))
    return edges


def _is_module_level(tree, target):
    """True when ``target`` is not inside a function body."""
    def visit(node, in_func):
        if node is target:
            return not in_func
        for child in ast.iter_child_nodes(node):
            r = visit(child, in_func or isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
            if r is not None:
                return r
        return None
    return visit(tree, False)


EDGES = _imports()
MODULE_NAMES = {m for m, _ in _modules()}


def _existing(target):
    """The fastem module an import refers to (``from .x import name`` names
    module x, or a name inside it)."""
    while target and target not in MODULE_NAMES:
        target = target.rpartition(".")[0]
    return target


def test_every_module_has_a_layer():
    tops = {_top(m) for m in MODULE_NAMES}
    assert tops <= set(RANK), f"modules without a layer: {sorted(tops - set(RANK))}"


def test_imports_point_down():
    bad = []
    for src, target, module_level in EDGES:
        dst = _existing(target)
        a, b = _top(src), _top(dst)
        if a == b or not dst:
            continue
        if RANK[b] > RANK[a]:
            if module_level or (a, b) not in UPWARD_AT_CALL_TIME:
                bad.append(f"{src} -> {dst} ({'module level' if module_level else 'in a function'})")
    assert not bad, "imports pointing up a layer:\n" + "\n".join(bad)


def test_no_import_cycles_at_module_level():
    graph = {}
    for src, target, module_level in EDGES:
        dst = _existing(target)
        if module_level and dst and dst != src and not src.startswith(dst + "."):
            graph.setdefault(src, set()).add(dst)
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_module_imports_first_in_a_fresh_interpreter():
    """An import cycle that only shows when a given module is imported first
    fails here: each module is the first fastem import of its own process."""
    procs = {}
    for modname in sorted(m for m in MODULE_NAMES if not m.endswith(".__main__")):
        procs[modname] = subprocess.Popen(
            [sys.executable, "-c", f"import {modname}"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    failed = {}
    for modname, p in procs.items():
        _, err = p.communicate(timeout=300)
        if p.returncode != 0:
            failed[modname] = err.strip().splitlines()[-1] if err.strip() else "?"
    assert not failed, failed


@pytest.mark.parametrize("modname,path", list(_modules()), ids=lambda v: str(v))
def test_module_size(modname, path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{modname} has {n} lines (limit about 600)"
