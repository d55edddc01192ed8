"""The README's commands are the ones CI runs; the README stays short, and every link in it and
in docs/ leads somewhere."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    [test_command] = [line for line in ci_lines if "pytest" in line and not line.startswith("#")]
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{test_command}\n```" in readme


def test_configuration_documents_every_environment_variable() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    sources = "\n".join(path.read_text() for path in (ROOT / "book_pipeline").rglob("*.py"))
    for variable in (
        "BOOK_PIPELINE_BOOKS_DIR",
        "BOOK_PIPELINE_DATA_DIR",
        "BOOK_PIPELINE_COLLECTION",
        "BOOK_PIPELINE_EMBEDDER",
        "BOOK_PIPELINE_EMBEDDING_MODEL",
        "BOOK_PIPELINE_SETTLE_SECONDS",
        "BOOK_PIPELINE_MAX_FILES_PER_RUN",
        "BOOK_PIPELINE_MAX_FILE_MB",
        "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS",
        "QDRANT_URL",
        "QDRANT_API_KEY",
        "QDRANT_SHARD_NUMBER",
        "QDRANT_REPLICATION_FACTOR",
        "QDRANT_WRITE_CONSISTENCY_FACTOR",
        "QDRANT_ON_DISK_VECTORS",
        "QDRANT_ON_DISK_PAYLOAD",
        "QDRANT_HNSW_M",
        "QDRANT_HNSW_EF_CONSTRUCT",
        "QDRANT_INT8_QUANTIZATION",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "BOOK_PIPELINE_STEP_RETRIES",
        "BOOK_PIPELINE_RETRY_DELAY_SECONDS",
        "BOOK_PIPELINE_ALERT_WEBHOOK_URL",
        "BOOK_PIPELINE_ALERT_EMAIL_TO",
        "BOOK_PIPELINE_ALERT_EMAIL_FROM",
        "BOOK_PIPELINE_ALERT_SMTP_HOST",
        "BOOK_PIPELINE_ALERT_SMTP_PORT",
        "BOOK_PIPELINE_ALERT_SMTP_PASSWORD",
        "BOOK_PIPELINE_LOG_LEVEL",
        "BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK",
        "BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN",
        "BOOK_PIPELINE_DEAD_RUN_GRACE_SECONDS",
    ):
        assert f"| `{variable}` |" in reference
        assert f'"{variable}"' in sources


def test_readme_is_short_and_its_variables_are_in_the_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    reference = (ROOT / "docs" / "configuration.md").read_text()
    readme_variables = re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE)
    assert readme_variables, "README.md has no table of variables"
    for variable in readme_variables:
        # Dagster's own variable is explained in the reference's text, not in the project's table.
        assert (f"`{variable}`" if variable == "DAGSTER_HOME" else f"| `{variable}` |") in reference


def outside_code(markdown: str) -> str:
    """The text of a markdown file without its fenced code blocks and inline code."""
    without_blocks = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", without_blocks)


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered."""
    anchors: set[str] = set()
    without_blocks = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6} +(.+?) *$", without_blocks, flags=re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        numbered, count = anchor, 0
        while numbered in anchors:
            count += 1
            numbered = f"{anchor}-{count}"
        anchors.add(numbered)
    return anchors


@pytest.mark.parametrize("source", MARKDOWN_FILES, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(source: Path) -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", outside_code(source.read_text()))
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (source.parent / path).resolve() if path else source
        assert target.exists(), f"{source.name}: {link} leads to no file"
        if anchor and target.suffix == ".md":
            assert anchor in heading_anchors(target.read_text()), (
                f"{source.name}: {link} leads to no heading of {target.name}"
            )
