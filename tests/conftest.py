"""What happened to each test of this session, for tests that vouch for other tests (the README's
commands count as covered only by a covering test that ran and passed). Tests marked `after_others`
run after every other test, so the outcomes they read are final. At the end of the run, no Ray
process that a test started may still be alive."""
from __future__ import annotations

import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class SessionOutcomes:
    """Per test id: which tests were collected, deselected (with their markers), and how each that ran ended."""

    collected: set[str] = field(default_factory=set, repr=False)
    deselected: dict[str, list[str]] = field(default_factory=dict, repr=False)
    results: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    """test id -> ("passed" | "failed" | "skipped", the skip reason or failing phase)."""


OUTCOMES = pytest.StashKey[SessionOutcomes]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[OUTCOMES] = SessionOutcomes()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[OUTCOMES].collected.update(item.nodeid for item in items)
    items.sort(key=lambda item: item.get_closest_marker("after_others") is not None)
    _follow_covered_integration_tests(items)


def _follow_covered_integration_tests(items: list[pytest.Item]) -> None:
    """A test marked `covers(test_id)` vouches for that test's outcome, so it runs in the same target: it
    gets the `integration` marker when the covered test has it. Runs before `-m` deselects anything."""
    integration = {item.nodeid for item in items if item.get_closest_marker("integration") is not None}
    for item in items:
        marker = item.get_closest_marker("covers")
        if marker is None:
            continue
        where = marker.args[0]
        if any(test_id == where or test_id.startswith(f"{where}[") for test_id in integration):
            item.add_marker(pytest.mark.integration)


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        item.config.stash[OUTCOMES].deselected[item.nodeid] = [m.name for m in item.iter_markers() if m.name != "parametrize"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    results = item.config.stash[OUTCOMES].results
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        results[item.nodeid] = ("skipped", reason.removeprefix("Skipped: "))
    elif report.failed:
        results[item.nodeid] = ("failed", f"in {report.when}")
    elif report.when == "call" and item.nodeid not in results:
        results[item.nodeid] = ("passed", "")
    return report


@pytest.fixture
def session_outcomes(request: pytest.FixtureRequest) -> SessionOutcomes:
    return request.config.stash[OUTCOMES]


@pytest.fixture(scope="session")
def short_gumbel_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short Gumbel search (no retrain) shared by the tests that read its run directory: the export,
    the reports and the budget sweep (which adds its `sweep.json` beside the search's files)."""
    from nas.supernet.search import run_gumbel_search
    from test_gumbel_search import short_config

    out = tmp_path_factory.mktemp("gumbel")
    run_gumbel_search(short_config(eval={"nmi_pairs": 0, "every_epochs": None}), out, retrain=False)
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No Ray process outlives the suite: every process of the sessions the tests started Ray in (drivers
    and cluster nodes, recorded by tests/tune_driver.py) must have ended. Any that has not is named,
    stopped, and fails the run."""
    driver = sys.modules.get("tune_driver")
    if driver is None:  # no test that starts Ray was collected
        return
    left = driver.leftovers()
    if not left:
        return
    from nas.tune.cluster import stop_processes

    described = []
    for pid in sorted(left):
        try:
            described.append(f"{pid}: {open(f'/proc/{pid}/cmdline', 'rb').read().replace(bytes(1), b' ').decode(errors='replace')[:160]}")
        except OSError:
            described.append(f"{pid}: (ended meanwhile)")
    stop_processes(lambda: left)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.section("Ray processes that outlived the tests (now stopped)", sep="=", red=True)
        for line in described:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
