"""What the distribution promises: torch as a range (sharenas installs beside another torch), upper
bounds on ray and optuna, whose behaviour `sharenas tune --resume` relies on, and that behaviour still there."""
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

# nas/tune reads no private attribute of Ray or Optuna. Beyond their documented API it relies on how
# Ray's OptunaSearch drives a define-by-run space and snapshots the searcher, checked below by
# test_the_searcher_keeps_its_record_through_a_snapshot.
READERS = tuple(sorted(str(path.relative_to(ROOT)) for path in (ROOT / "nas" / "tune").glob("*.py")))

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
def test_libraries_whose_behaviour_nas_tune_relies_on_have_an_upper_bound(name):
    requirement = requirements()[name]
    assert any(s.operator in ("<", "<=", "~=") for s in requirement.specifier), (
        f"pyproject's {requirement} has no upper bound, but nas/tune/reconcile.py relies on how {name} behaves beyond its documented API")
    assert requirement.specifier.contains(version(name)), f"the installed {name} {version(name)} is outside pyproject's {requirement}"


def test_nas_tune_reads_no_private_attribute():
    """No `x._name` in nas/tune on an object it did not define: Ray's and Optuna's internals change
    without notice; their public API (or the searcher's own record) serves instead."""
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
    assert not read - own, f"private attributes read in {READERS}: {sorted(read - own)}"


def space(trial: optuna.Trial) -> None:
    """A define-by-run space (module level: the searcher's snapshot pickles it)."""
    trial.suggest_int("k", 0, 3)


def test_the_searcher_keeps_its_record_through_a_snapshot(tmp_path):
    """Drives `ReconciledOptunaSearch` through Ray's suggest, complete, save and restore. A release
    that stops calling the define-by-run space with the trial it asked for, or stops keeping the
    searcher's attributes in its snapshot, fails here by name instead of breaking `sharenas tune --resume`."""
    from nas.tune.reconcile import OWNER_ATTR, ReconciledOptunaSearch

    url = f"sqlite:///{tmp_path}/study.db"

    def searcher(experiment: str) -> ReconciledOptunaSearch:
        return ReconciledOptunaSearch(space=space, metric="loss", mode="min", storage=optuna.storages.RDBStorage(url), study_name="s",
                                      experiment=experiment, num_samples=2, max_retry=None)

    versions = f"ray {version('ray')} / optuna {version('optuna')}"
    search = searcher("s/0")
    assert search.suggest("t0") is not None
    (trial,) = optuna.load_study(study_name="s", storage=url).trials
    assert search.asked == {"t0": trial.number} and trial.user_attrs.get(OWNER_ATTR) == "s/0", (
        f"{versions}: OptunaSearch.suggest no longer describes the trial it asked for with the define-by-run space; "
        "keep pyproject's bound below this release or port nas/tune/reconcile.py")
    search.on_trial_complete("t0", {"loss": 1.0})
    assert optuna.load_study(study_name="s", storage=url).trials[0].state == optuna.trial.TrialState.COMPLETE and search.done == {"t0"}
    search.save(str(tmp_path / "searcher.pkl"))
    resumed = searcher("s/1")
    resumed.restore(str(tmp_path / "searcher.pkl"))  # a ConfigError names the snapshot when Ray no longer keeps the record in it
    assert (resumed.experiment, resumed.asked, resumed.done) == ("s/0", {"t0": trial.number}, {"t0"}), (
        f"{versions}: OptunaSearch.restore no longer restores the searcher's attributes")
