"""The README's commands are the ones CI runs and the ones that work."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    ):
        assert f"| `{variable}` |" in reference
        assert f'"{variable}"' in sources
