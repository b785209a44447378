"""Data flows one way: config -> policy -> model -> trainer -> search -> export/report. The library
layers never import the search, and no search module imports the command line."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["search_spaces", "trainer"])
def test_library_layers_never_import_the_search(folder):
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m == "nas" or m.startswith("nas."))
                 for p in files(folder)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_search_modules_never_import_the_cli():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("nas.cli"))
                 for p in files("nas") if "cli" not in p.relative_to(ROOT / "nas").parts}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_search_spaces_never_import_the_trainer():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("trainer"))
                 for p in files("search_spaces")}
    assert {k: v for k, v in offenders.items() if v} == {}
