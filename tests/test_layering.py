"""The layout of the code, checked on its source: an AST walk over every module of the packages, so a
new file is covered without touching this test.

The layers, lowest first; a module imports only from its own layer and the layers below it:

0. `search_spaces`: the policy schema, the presets and sizes, both search spaces, the model family;
1. `trainer`: data, loss, the training loop, evaluation, the typed-config loader;
2. `nas/*.py` beside the subpackages (`objective.py`, `scoring.py`, `provenance.py`): what the
   strategies share (a nas child not listed in `NAS_LAYERS` lands here too);
3. the strategies, `nas/supernet/`, `nas/discrete/`, `nas/conflict/`: none imports another;
4. `nas/tune/`: runs the trials of either strategy on Ray Tune;
5. `nas/bench/` (the ground truth) and `nas/ranking/` (how a ranking agrees with it; the bench's noise
   ceiling uses its rank statistics);
6. `nas/export/` and `nas/report.py`: what a search hands over;
7. `nas/cli/`: the command line.

Every import statement counts, at module level, inside functions and under `TYPE_CHECKING` alike:
the order and the absence of cycles hold for all of them, and each names a module that exists and
takes a name from the module that defines it. No source file (packages, tests, scripts, benchmarks)
exceeds 400 lines.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_spaces", "trainer", "nas")
SOURCES = (*PACKAGES, "tests", "scripts", "benchmarks")
MAX_LINES = 400
NAS_LAYERS = {
    "supernet": 3, "discrete": 3, "conflict": 3,
    "tune": 4,
    "bench": 5, "ranking": 5,
    "export": 6, "report": 6,
    "cli": 7,
}
SHARED_LAYER = 2
STRATEGIES = ("nas.supernet", "nas.discrete", "nas.conflict")
SEARCH_ONLY = ("optuna", "optuna_dashboard", "ray")
"""Third-party packages of the search that the library layers never import."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def from_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, absolute module, name) of every `from module import name` in `path`, relative ones resolved."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    out = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out += [(node.lineno, base, alias.name) for alias in node.names]
    return out


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in `path`; `from X import name` names
    the module `X.name` when that is a module of the packages, else `X`."""
    out = [(node.lineno, alias.name) for node in ast.walk(tree(path)) if isinstance(node, ast.Import) for alias in node.names]
    for line, base, name in from_imports(path):
        out.append((line, f"{base}.{name}" if f"{base}.{name}" in modules() else base))
    return sorted(out)


def module_names(path: Path) -> tuple[set[str], set[str]]:
    """The names a module defines at its top level (also under `if` / `try`), and those it imports there."""
    defined: set[str] = set()
    imported: set[str] = set()
    statements = list(tree(path).body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            statements += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
            statements += [stmt for handler in getattr(node, "handlers", []) for stmt in handler.body]
    return defined, imported


def exported(path: Path) -> set[str]:
    """The names in a module's `__all__`."""
    for node in tree(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def internal_imports(path: Path) -> list[tuple[int, str]]:
    return [(line, name) for line, name in imports(path) if name.split(".")[0] in PACKAGES]


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "search_spaces":
        return 0
    if parts[0] == "trainer":
        return 1
    return NAS_LAYERS.get(parts[1], SHARED_LAYER) if len(parts) > 1 else SHARED_LAYER


def strategy(module: str) -> str | None:
    return next((s for s in STRATEGIES if module == s or module.startswith(s + ".")), None)


def test_every_module_is_found():
    found = modules()
    assert {"search_spaces", "search_spaces.gate_space", "search_spaces.layout_space", "search_spaces.model.shared_clip",
            "trainer.typed_config", "nas.supernet.search", "nas.ranking.rank_check", "nas.cli.app"} <= set(found)
    assert len(found) == sum(1 for package in PACKAGES for _ in (ROOT / package).rglob("*.py"))


def test_internal_imports_name_modules_that_exist():
    """A moved or renamed module leaves no import behind (packages, tests, scripts, benchmarks)."""
    missing = {
        f"{p.relative_to(ROOT)}:{line}": name
        for folder in SOURCES for p in sorted((ROOT / folder).rglob("*.py"))
        for line, name in internal_imports(p) if name not in modules()
    }
    assert missing == {}


def test_imported_names_are_taken_from_where_they_are_defined():
    """`from module import name` finds `name` defined in `module`: a renamed or moved name leaves no
    import behind (packages, tests, scripts, benchmarks; also imports inside functions), and a plain
    module passes on no name it imports itself unless its `__all__` says so (a package's `__init__` may)."""
    wrong = {}
    for folder in SOURCES:
        for p in sorted((ROOT / folder).rglob("*.py")):
            for line, base, name in from_imports(p):
                if base not in modules() or name == "*" or f"{base}.{name}" in modules():
                    continue
                source = modules()[base]
                defined, imported = module_names(source)
                passed_on = name in imported and (source.name == "__init__.py" or name in exported(source))
                if name not in defined and not passed_on:
                    wrong[f"{p.relative_to(ROOT)}:{line}"] = f"{name} from {base}" + (" (imported there, not defined)" if name in imported else " (not there)")
    assert wrong == {}


def test_imports_follow_the_layer_order():
    wrong = {}
    for name, path in modules().items():
        for line, target in internal_imports(path):
            if layer(target) > layer(name):
                wrong[f"{path.relative_to(ROOT)}:{line}"] = f"{target} (layer {layer(target)} above {name}'s {layer(name)})"
    assert wrong == {}, "move the code down a layer or the importer up; the layers are in this test's docstring"


def test_the_strategies_do_not_import_each_other():
    crossing = {
        f"{path.relative_to(ROOT)}:{line}": target
        for name, path in modules().items() if strategy(name)
        for line, target in internal_imports(path) if strategy(target) not in (None, strategy(name))
    }
    assert crossing == {}


@pytest.mark.parametrize("package", ["search_spaces", "trainer"])
def test_the_library_layers_import_neither_optuna_nor_ray(package):
    found = {
        f"{path.relative_to(ROOT)}:{line}": target
        for name, path in modules().items() if name.split(".")[0] == package
        for line, target in imports(path) if target.split(".")[0] in SEARCH_ONLY
    }
    assert found == {}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_import_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert sorted(import_cycles(graph)) == [["a", "b", "c"], ["d"]]


def test_no_module_imports_itself_back():
    graph = {name: {target for _, target in internal_imports(path)} for name, path in modules().items()}
    cycles = import_cycles(graph)
    assert cycles == [], "modules that import each other, directly or around a loop: " + "; ".join(", ".join(c) for c in cycles)


@pytest.mark.parametrize("folder", SOURCES)
def test_no_source_file_exceeds_400_lines(folder):
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / folder).rglob("*.py")) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these by concept (at most {MAX_LINES} lines each)"
