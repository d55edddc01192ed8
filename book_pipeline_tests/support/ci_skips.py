"""A pytest plugin (conftest.py loads it): under CI (`CI=true`) a skipped test fails.

A test skips, saying why, where the machine lacks root, a server's binaries (PostgreSQL, Redis) or
Chromium. CI has them all (`.ci/run` installs the packages and runs as root), so a skip there
means a test did not run that CI was meant to run: the run fails, with the skip's reason. An
expected failure (`xfail`) is not a skip and stays as it is.
"""

import os
from collections.abc import Iterator

import pytest


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def _fail_instead_of_skipping(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI=true, where nothing may skip: {reason}\n"
        ".ci/run installs PostgreSQL, Redis and Chromium and runs as root; see its log for what "
        "it could not provide"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    report = yield
    if running_in_ci():
        _fail_instead_of_skipping(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator:
    report = yield
    if running_in_ci():
        _fail_instead_of_skipping(report)
    return report
