"""The UI in a real browser: `dagster dev` on a loopback port, Debian's Chromium through
Playwright, a click on Materialize, as a user does it.

Playwright's own browser download cannot work here: the test drives the system's Chromium
(`.ci/run` installs it where it is missing) and skips, saying so, only where there is none.
The screenshot of the asset page is kept in `test-artifacts/` (gitignored) and its path printed.
"""

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from book_pipeline.core.books.files import mapping_key_for
from book_pipeline_tests.support.data_folder import point_count
from book_pipeline_tests.support.services import free_port, stop_process_group, wait_until
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and nothing that would reach for the network: the machine has none.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FILES = 3
RUN_TIMEOUT_MS = 90_000


def server_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def chromium() -> str:
    """The system's Chromium; the test skips before it starts `dagster dev` where there is none."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium: `apt-get install chromium` (.ci/run does)")
    return CHROMIUM


@pytest.fixture
def dagster_dev(tmp_path: Path, books_dir: Path, data_dir: Path) -> Iterator[str]:
    """`dagster dev` (webserver, daemon, code server) on a free loopback port; its URL."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    log = (tmp_path / "dagster_dev.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            *("dev", "-m", "book_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)),
        ],
        env={
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
            "BOOK_PIPELINE_DATA_DIR": str(data_dir),
            # The Materialize button loads the files, not the file-arrival sensor.
            "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS": "3600",
        },
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server_answers(url), "dagster dev")
        yield url
    finally:
        # dagster dev takes its time to stop on SIGTERM; its files are temporary, kill soon.
        stop_process_group(process, timeout=3)
        log.close()


@pytest.mark.slow
def test_materialize_in_the_browser(
    chromium: str, dagster_dev: str, books_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    write_synthetic_books(books_dir, files=FILES, books_per_file=2)
    keys = sorted(mapping_key_for(path.name) for path in books_dir.iterdir())
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    screenshot = ARTIFACTS_DIR / "book_embeddings_asset_page.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{dagster_dev}/assets/book_embeddings")
            page.get_by_role("button", name="Skip").click()  # Dagster's first-visit dialog
            page.locator("button", has_text=re.compile(r"^Materialize$")).click()
            # The toast "Launched run ... View" links to the run.
            run_link = page.locator("a[href^='/runs/']", has_text=re.compile(r"^View$"))
            run_link.wait_for()
            run_path = run_link.get_attribute("href")
            assert run_path is not None and run_path.startswith("/runs/")

            page.goto(f"{dagster_dev}{run_path}")
            expect(page.get_by_text("Success", exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
            page.get_by_text(re.compile(r"^Succeeded \(\d+\)$")).click()
            steps = {
                element.get_attribute("data-tooltip")
                for element in page.locator("[data-tooltip^='book_embeddings.']").all()
            }
            for op in ("transform_book_description_file", "create_vector_embeddings"):
                copies = sorted(
                    step.removeprefix(f"book_embeddings.{op}[").removesuffix("]")
                    for step in steps
                    if step and step.startswith(f"book_embeddings.{op}[") and "[?]" not in step
                )
                assert copies == keys, f"{op}: {copies}"
            assert point_count(data_dir) == FILES * 2

            page.goto(f"{dagster_dev}/assets/book_embeddings")
            expect(page.get_by_text("books_loaded").first).to_be_visible()
        finally:
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot of the last page: {screenshot}")
            browser.close()
