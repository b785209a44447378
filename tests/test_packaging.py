"""What the distribution promises: torch as a range (sharenas installs beside another torch), upper
bounds on the libraries whose private attributes nas/tune reads, and those attributes still there."""
from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import optuna
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# The private attributes nas/tune reads, by the class that holds them. A new one read there fails
# test_the_private_attributes_read_are_the_listed_ones until it is listed here (and so checked below).
PRIVATE = {
    "OptunaSearch": ("_ot_study", "_ot_trials", "_completed_trials"),
    "optuna.Study": ("_storage", "_study_id"),
    "optuna.Trial": ("_trial_id",),
}
READERS = ("nas/tune/reconcile.py", "nas/tune/driver.py")


def requirements() -> dict[str, Requirement]:
    return {Requirement(line).name: Requirement(line) for line in PYPROJECT["project"]["dependencies"]}


def makefile_pin(name: str) -> Version:
    match = re.search(rf"\b{name}==([\w.]+)", (ROOT / "Makefile").read_text())
    assert match, f"the Makefile no longer pins {name} for the venv"
    return Version(match.group(1))


def test_torch_is_a_range_that_admits_a_torch_two_minor_versions_older_than_the_pin():
    pin = makefile_pin("torch")
    torch = requirements()["torch"]
    older = Version(f"{pin.major}.{pin.minor - 2}.0")
    assert torch.specifier.contains(pin), f"pyproject's {torch} refuses the Makefile's pin {pin}"
    assert torch.specifier.contains(older), f"pyproject's {torch} refuses torch {older}: a user with it cannot install sharenas beside it"
    vision = requirements()["torchvision"]
    assert vision.specifier.contains(makefile_pin("torchvision")) and not any(s.operator == "==" for s in vision.specifier)


@pytest.mark.parametrize("name", ["ray", "optuna"])
def test_libraries_whose_private_attributes_are_read_have_an_upper_bound(name):
    requirement = requirements()[name]
    assert any(s.operator in ("<", "<=", "~=") for s in requirement.specifier), (
        f"pyproject's {requirement} has no upper bound, but {' and '.join(READERS)} read private attributes of {name}")
    assert requirement.specifier.contains(version(name)), f"the installed {name} {version(name)} is outside pyproject's {requirement}"


def test_the_private_attributes_read_are_the_listed_ones():
    """Every `x._name` that nas/tune reads on an object it did not define is listed in PRIVATE."""
    read, own = set(), set()
    for path in READERS:
        tree = ast.parse((ROOT / path).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                read.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                own.add(node.name)
            elif isinstance(node, ast.Assign):
                own.update(t.attr for t in node.targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self")
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
                own.add(node.target.attr)
    listed = {attr for attrs in PRIVATE.values() for attr in attrs}
    assert read - own == listed, f"private attributes read in {READERS}: {sorted(read - own)}; listed in PRIVATE: {sorted(listed)}"


def test_the_private_attributes_read_still_exist():
    """Drives `ReconciledOptunaSearch` through the calls that read them; a release that renamed one fails
    here with the attribute's name instead of breaking `sharenas tune --resume` silently."""
    from nas.tune.reconcile import ReconciledOptunaSearch

    def space(trial: optuna.Trial) -> None:
        trial.suggest_int("k", 0, 3)

    storage = optuna.storages.InMemoryStorage()
    search = ReconciledOptunaSearch(space=space, metric="loss", mode="min", storage=storage, study_name="private",
                                    experiment="private/0", num_samples=2, max_retry=None)
    assert search.suggest("t0") is not None
    study = getattr(search, "_ot_study", None)
    found = {
        "OptunaSearch": search,
        "optuna.Study": study,
        "optuna.Trial": next(iter(getattr(search, "_ot_trials", {}).values()), None),
    }
    for owner, attrs in PRIVATE.items():
        for attr in attrs:
            assert hasattr(found[owner], attr), (
                f"{owner} has no attribute {attr} in ray {version('ray')} / optuna {version('optuna')}: "
                f"{' and '.join(READERS)} read it; keep pyproject's bound below this release or port them")
    search.on_trial_complete("t0", {"loss": 1.0})
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and "t0" in search._ot_trials
