"""The tests never reach the outside: a shell with QDRANT_URL and OPENAI_BASE_URL exported (a
real server's collection, a paid endpoint) leaves them untouched (support/environment.py)."""

import os
import subprocess
import sys
from pathlib import Path

from book_pipeline_tests.support.environment import TEST_ENVIRONMENT, outside_variables
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub
from book_pipeline_tests.support.runs import SampleLoad
from book_pipeline_tests.test_faults import loaded_files

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_FILES = 6
SAMPLE_BOOKS = 45


def test_the_sample_load_uses_only_its_own_folders(sample_load: SampleLoad) -> None:
    """Run by the test below in a shell that points at two servers; on its own it checks that
    the tests' environment holds nothing from outside."""
    assert outside_variables(os.environ) == sorted(TEST_ENVIRONMENT)
    loaded = loaded_files(sample_load.data_dir)
    assert len(loaded) == SAMPLE_FILES
    assert sum(loaded.values()) == SAMPLE_BOOKS


def test_a_shell_pointing_at_a_qdrant_server_and_openai_sends_neither_a_request(
    tmp_path: Path,
) -> None:
    qdrant, endpoint = QdrantStubState(), EmbeddingsServerState(dimensions=64)
    with qdrant_rest_stub(qdrant) as qdrant_url, embeddings_server(endpoint) as openai_url:
        shell = {
            **os.environ,
            "QDRANT_URL": qdrant_url,
            "QDRANT_API_KEY": "shell-qdrant-key",
            "OPENAI_BASE_URL": openai_url,
            "OPENAI_API_KEY": "sk-shell",
            "BOOK_PIPELINE_EMBEDDER": "openai",
            "BOOK_PIPELINE_DATA_DIR": str(tmp_path / "shell_data"),
        }
        inner = subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
                f"{Path(__file__).relative_to(ROOT)}::"
                f"{test_the_sample_load_uses_only_its_own_folders.__name__}",
            ],
            env=shell,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert [(method, path) for method, path, _ in qdrant.requests] == []
    assert len(endpoint.requests) == 0
    assert inner.returncode == 0, inner.stdout[-3000:] + inner.stderr[-3000:]
    assert "1 passed" in inner.stdout
    assert not (tmp_path / "shell_data").exists()
