"""The package's layering, checked on the source: every ``spade`` import (relative or
absolute, anywhere in a file) points to the same or a lower layer, and none hides in a
function body (a deferred import is how a cycle hides)."""
from __future__ import annotations

import ast
from pathlib import Path

import spade

ROOT = Path(spade.__file__).parent
#: lowest first; a module may import its own layer and the ones below it
LAYERS = [{"errors", "limits", "fileio", "macs", "metrics", "progress"}, {"physics"}, {"data"}, {"evaluation"}, {"models"},
          {"profile"}, {"prune"}, {"finetune"}, {"report"}, {"jobs"}, {"pipeline"}, {"commands", "cli", "__main__"}]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _imports(path: Path):
    """``(spade submodule imported, line, inside a function)`` of every import of ``path``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = ["spade", *parts[:-1]]
    tree = ast.parse(path.read_text())
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names = [base + node.module.split(".")] if node.module else [base + [a.name] for a in node.names]
            else:
                names = [node.module.split(".")] if node.module and node.module.split(".")[0] == "spade" else []
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names if a.name.split(".")[0] == "spade"]
        else:
            continue
        for name in names:
            yield name, node.lineno, id(node) in in_function


def test_every_module_knows_its_layer():
    modules = {p.relative_to(ROOT).with_suffix("").parts[0] for p in ROOT.rglob("*.py")} - {"__init__"}
    assert modules <= set(RANK), modules - set(RANK)


def test_no_module_imports_a_higher_layer_or_imports_in_a_function():
    upward, deferred = [], []
    for path in sorted(ROOT.rglob("*.py")):
        own = path.relative_to(ROOT).with_suffix("").parts[0]
        for name, line, in_function in _imports(path):
            where = f"{path.relative_to(ROOT.parent)}:{line} imports {'.'.join(name)}"
            if in_function:
                deferred.append(where)
            if own in RANK and len(name) > 1 and name[1] in RANK and RANK[name[1]] > RANK[own]:
                upward.append(where)
    assert not upward, "\n".join(upward)
    assert not deferred, "\n".join(deferred)
