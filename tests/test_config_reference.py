"""The configuration reference (scripts/config_reference.py, a mkdocs hook) covers every key of every
config, and every key has a docstring: a key added without one fails here, not in a reader's hands."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
reference = sys.modules["config_reference"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def loaded_classes() -> set[str]:
    """The class names passed to `load_config(source, Class, ...)` anywhere in the packages (a variable
    holding a class, such as `trainer.run`'s `schema`, names one of these)."""
    names = set()
    for package in ("search_spaces", "trainer", "nas"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_config"
                        and len(node.args) >= 2 and isinstance(node.args[1], ast.Name) and node.args[1].id[0].isupper()):
                    names.add(node.args[1].id)
    return names


def test_every_config_a_yaml_is_loaded_into_is_a_root_of_the_reference():
    loaded = loaded_classes()
    assert {"TrainConfig", "GumbelConfig", "BenchConfig", "RankCheckConfig", "TuneConfig", "ConflictConfig"} <= loaded
    assert loaded - set(reference.ROOTS) == set(), "load_config reads a config the reference does not list: add it to ROOTS"


def test_every_key_has_a_docstring():
    missing = [f"{cls.__module__}.{cls.__name__}.{key.name}" for cls in reference.config_classes()
               for key in reference.keys(cls) if not key.doc]
    assert missing == [], f"keys without an attribute docstring (a string literal right under the field): {missing}"


def test_the_page_has_a_row_for_every_key_of_every_section():
    page = reference.render()
    classes = reference.config_classes()
    names = {cls.__name__ for cls in classes}
    assert {"DataConfig", "TrainSection", "OptimConfig", "SearchSection", "DeriveSection", "LayoutSpaceConfig", "ObjectiveConfig",
            "SamplerConfig", "HeldOutSection", "ResourcesSection", "SchedulerSection", "FinetuneSection", "ConflictSection"} <= names
    for cls in classes:
        part = page.split(f"{cls.__name__} {{ #{cls.__name__.lower()} }}")[1].split("\n#")[0]
        rows = {line.split("|")[1].strip().strip("`") for line in part.splitlines() if line.startswith("| `")}
        assert rows == {key.name for key in reference.keys(cls)}, cls.__name__
    assert "| `budget` | str or int or null | `null` |" in page
    assert "| `train` | [TrainSection](#trainsection) | section, with `{batch_size: 128, epochs: 6}` |" in page


def test_a_field_docstring_is_the_string_right_under_the_field():
    """`field_docs` reads the literal after an annotated field, from the class and its dataclass bases."""
    from nas.supernet.config import SupernetSection

    docs = reference.field_docs(SupernetSection)
    assert docs["entangle"].startswith("Weight entanglement") and docs["fusion_layers"].startswith("Candidate layers")
    assert "\n" not in docs["fusion_layers"]
