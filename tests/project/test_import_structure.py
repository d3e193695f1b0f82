"""Our modules import each other at module top, in one direction (docs/architecture.md, "Imports").

Every module under edgexfer/ is parsed (ast, nothing imported) and two rules are checked:

* an ``edgexfer`` import inside a function or under ``if TYPE_CHECKING:`` (or
  ``importlib.import_module("edgexfer...")`` anywhere) is a defect, outside the sanctioned places: the CLI's
  command bodies (each command imports its library call when it runs, so ``edgexfer --help`` stays fast)
  and the package's PEP 562 ``__getattr__`` (with the TYPE_CHECKING imports that type it). Heavy optional
  libraries (TensorFlow, ONNX Runtime, Ray, ...) may be imported inside functions; our own modules may not;
* the imports that run when a module loads (module top, class bodies, ``try`` blocks; not
  ``if TYPE_CHECKING:``) form no cycle. ``from pkg import name`` counts as an import of ``pkg`` (and of
  the submodule ``pkg.name`` when there is one), so a submodule is imported as ``import pkg.sub as sub``;
  a module's implicit import of its parent packages is not counted (a package ``__init__`` may import its
  own submodules).

A third rule keeps modules small enough to hold one concern: every module under edgexfer/ has fewer than
``MAX_LINES`` lines, except those listed in ``OVER_LIMIT`` (each still over it: a module split off the list
leaves it).
"""

from __future__ import annotations

import ast
import graphlib
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "edgexfer"

#: (module, function) pairs where importing our own modules late is sanctioned; "*": a package and all it holds
SANCTIONED = {("edgexfer", "__getattr__"), ("edgexfer", "TYPE_CHECKING"), ("edgexfer.cli", "*")}

#: a module of this many lines or more mixes concerns: split it by concern (issue 22)
MAX_LINES = 500
#: modules still over MAX_LINES, each with why it waits (the list only shrinks)
OVER_LIMIT: dict[str, str] = {}


@dataclass
class ImportGraph:
    edges: dict[str, set[str]] = field(default_factory=dict)
    late: list[str] = field(default_factory=list)  # "module:line function: statement" of each late import


def _module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _sanctioned(module: str, function: str) -> bool:
    return any(module == m and function == f or f == "*" and (module == m or module.startswith(m + "."))
               for m, f in SANCTIONED)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(root: Path = PACKAGE) -> ImportGraph:
    """The load-time import edges among the modules of the package at ``root``, and its late imports."""
    modules = _module_names(root)
    top = root.name
    graph = ImportGraph({name: set() for name in modules})

    def targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names if a.name.split(".")[0] == top]
        if node.level:
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source.split(".")[0] != top:
            return []
        return [source] + [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in modules]

    def resolve(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]
        return name

    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))

        def visit(node: ast.AST, function: str | None, module: str = module, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and function is None and _is_type_checking(child):
                    for sub in child.body:
                        if (isinstance(sub, (ast.Import, ast.ImportFrom)) and targets(module, path, sub)
                                and not _sanctioned(module, "TYPE_CHECKING")):
                            graph.late.append(f"{module}:{sub.lineno} TYPE_CHECKING: {ast.unparse(sub)}")
                    for sub in child.orelse:
                        visit(sub, function)
                    continue
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    name = getattr(child, "name", "<lambda>")
                    visit(child, name if function is None else f"{function}.{name}")
                    continue
                late = function is not None and not _sanctioned(module, function.split(".")[0])
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    found = targets(module, path, child)
                    if found and late:
                        graph.late.append(f"{module}:{child.lineno} {function}: {ast.unparse(child)}")
                    elif found and function is None:
                        graph.edges[module].update(resolve(t) for t in found if resolve(t) != module)
                elif (isinstance(child, ast.Call) and isinstance(child.func, (ast.Attribute, ast.Name))
                      and getattr(child.func, "attr", getattr(child.func, "id", "")) == "import_module"
                      and child.args and isinstance(child.args[0], ast.Constant)
                      and str(child.args[0].value).split(".")[0] == top
                      and not (function and _sanctioned(module, function.split(".")[0]))):
                    graph.late.append(f"{module}:{child.lineno} {function}: {ast.unparse(child)}")
                visit(child, function)

        visit(tree, None)
    return graph


def cycle(graph: ImportGraph) -> list[str]:
    """One import cycle among the load-time edges (its modules, the first repeated last), or []."""
    try:
        graphlib.TopologicalSorter(graph.edges).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return []


def test_our_modules_import_each_other_at_module_top():
    late = import_graph().late
    assert not late, "edgexfer imports inside functions (move them to the module top):\n" + "\n".join(late)


def test_no_import_cycle_among_our_modules():
    found = cycle(import_graph())
    assert not found, "import cycle: " + " -> ".join(found)


def test_the_checks_find_a_planted_late_import_and_cycle(tmp_path):
    """The two checks above on a package made to break both rules."""
    package = tmp_path / "edgexfer"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("def __getattr__(name):\n    from edgexfer import a\n")
    (package / "a.py").write_text("from edgexfer.b import f\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgexfer.c\n"
                                   "def f():\n    import numpy\n    from . import c\n")
    (package / "c.py").write_text("import importlib\nfrom edgexfer import a\n"
                                  "def g():\n    return importlib.import_module('edgexfer.b')\n")
    (package / "cli" / "__init__.py").write_text("def command():\n    from edgexfer.a import f\n")
    graph = import_graph(package)
    assert [line.split(" ", 1)[0] for line in graph.late] == ["edgexfer.b:3", "edgexfer.b:6", "edgexfer.c:4"]
    assert cycle(graph) == []  # b -> c only for type checkers and inside a function, c -> b through import_module
    (package / "b.py").write_text("from edgexfer import c\n")
    assert set(cycle(import_graph(package))) == {"edgexfer.a", "edgexfer.b", "edgexfer.c"}


def long_modules(root: Path = PACKAGE, limit: int = MAX_LINES) -> dict[str, int]:
    """The modules of the package at ``root`` with ``limit`` lines or more, and their line counts."""
    counts = {name: len(path.read_text().splitlines()) for name, path in _module_names(root).items()}
    return {name: n for name, n in counts.items() if n >= limit}


def test_every_module_is_under_the_line_limit():
    over = long_modules()
    unlisted = {name: n for name, n in over.items() if name not in OVER_LIMIT}
    assert not unlisted, f"modules of {MAX_LINES} lines or more (split them by concern): {unlisted}"
    fixed = sorted(set(OVER_LIMIT) - set(over))
    assert not fixed, f"under {MAX_LINES} lines now: take them off OVER_LIMIT: {fixed}"


def test_the_line_limit_finds_a_planted_long_module(tmp_path):
    package = tmp_path / "edgexfer"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("x = 1\n" * (MAX_LINES - 1))
    (package / "sub" / "long.py").write_text("x = 1\n" * MAX_LINES)
    assert long_modules(package) == {"edgexfer.sub.long": MAX_LINES}
