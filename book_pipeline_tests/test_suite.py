"""How the suite itself runs: under CI a skip fails (`support/ci_skips.py`), and pytest's own
exit codes stay as they are, "no tests collected" (5) included."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SOME_TESTS = """
import pytest

pytest.importorskip("{module}")


def test_passes():
    pass


def test_skips():
    pytest.skip("no redis-server here")


@pytest.mark.xfail(strict=False, reason="known to fail")
def test_is_expected_to_fail():
    assert False
"""


def run_pytest(folder: Path, ci: str | None, module: str = "os") -> subprocess.CompletedProcess:
    """pytest over a test file of its own, serially, with the CI plugin and no project config."""
    (folder / "test_some.py").write_text(SOME_TESTS.format(module=module))
    environment = {name: value for name, value in os.environ.items() if name != "CI"}
    if ci is not None:
        environment["CI"] = ci
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-rfEs", "-c", str(folder / "pytest.ini")),
            *("-p", "book_pipeline_tests.support.ci_skips", "-p", "no:cacheprovider", str(folder)),
        ],
        env=environment,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_outside_ci_a_skip_is_a_skip(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    completed = run_pytest(tmp_path, ci=None)
    assert completed.returncode == 0, completed.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in completed.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skip_fails_saying_why(tmp_path: Path, ci: str) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    completed = run_pytest(tmp_path, ci=ci)
    assert completed.returncode == 1, completed.stdout
    assert "1 failed, 1 passed, 1 xfailed" in completed.stdout
    assert "skipped under CI=true, where nothing may skip: no redis-server here" in (
        completed.stdout
    )


def test_under_ci_a_module_that_skips_fails(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    completed = run_pytest(tmp_path, ci="true", module="no_such_module_here")
    assert completed.returncode != 0, completed.stdout
    assert "skipped under CI=true" in completed.stdout
    assert "could not import 'no_such_module_here'" in completed.stdout


def test_no_tests_collected_is_still_exit_code_5(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\npython_files = nothing_matches_*.py\n")
    completed = run_pytest(tmp_path, ci="true")
    assert completed.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, completed.stdout
