import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from book_pipeline.core.books.files import snapshot_book_file
from book_pipeline.core.embedding.cache import embed_with_cache, open_embedding_cache
from book_pipeline.core.ingest.ledger import LoadLedger
from book_pipeline.core.runtime.disk_space import (
    DiskFullError,
    describe_bytes,
    folder_size_bytes,
    naming_full_disk,
)
from book_pipeline.core.store.edge_space import EDGE_INDEXING_THRESHOLD_BYTES
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline_tests.support.small_filesystems import fill, mounted_ext4, mounted_tmpfs


def test_the_size_on_disk_counts_blocks_not_lengths(tmp_path: Path) -> None:
    with (tmp_path / "sparse").open("wb") as handle:
        handle.truncate(2**30)
    (tmp_path / "dense").write_bytes(b"x" * 100_000)
    assert 100_000 <= folder_size_bytes(tmp_path) < 2**20
    assert folder_size_bytes(tmp_path / "missing") == 0


def test_bytes_are_shown_exactly_and_in_a_unit_a_person_reads() -> None:
    assert describe_bytes(4_741_056) == "4,741,056 bytes (4.5 MiB)"
    assert describe_bytes(3 * 2**30) == "3,221,225,472 bytes (3.0 GiB)"


def test_other_errors_pass_through_unnamed() -> None:
    with pytest.raises(sqlite3.OperationalError), naming_full_disk(Path("x")):
        raise sqlite3.OperationalError("database is locked")


@pytest.fixture
def full_tmpfs(tmp_path: Path):
    with mounted_tmpfs(tmp_path / "small", size="2m") as folder:
        yield folder


def test_the_ledger_on_a_full_disk_raises_an_error_naming_it(
    full_tmpfs: Path, tmp_path: Path
) -> None:
    ledger = LoadLedger(full_tmpfs / "ledger.sqlite")
    ledger.entries(None)  # created while there is room
    book_file = tmp_path / "a.txt"
    book_file.write_text("x")
    fill(full_tmpfs)

    with pytest.raises(DiskFullError) as raised:
        ledger.record_failed(snapshot_book_file(book_file, tmp_path), "0" * 64, "e" * 2**20, 1)

    assert str(raised.value).startswith(
        f"the disk is full: could not write {full_tmpfs / 'ledger.sqlite'} ("
    )
    assert "database or disk is full" in str(raised.value)


class ConstantEmbedder:
    model_name = "constant"
    dimension = 384

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), self.dimension), dtype=np.float32)


def test_the_embedding_cache_on_a_full_disk_raises_an_error_naming_it(full_tmpfs: Path) -> None:
    cache = open_embedding_cache(full_tmpfs / "embedding_cache")
    filler = fill(full_tmpfs)

    with pytest.raises(DiskFullError) as raised:
        embed_with_cache(ConstantEmbedder(), cache, [f"book {n}" for n in range(2000)])

    assert f"could not write {full_tmpfs / 'embedding_cache'} (" in str(raised.value)
    filler.unlink()
    assert embed_with_cache(ConstantEmbedder(), cache, ["book 1"]).cache_misses == 1
    cache.close()


# Upserts batches of 384-d books into the store until `total`, or until a full disk stops it;
# prints how many were written and the error. In its own process: were the check to miss, the
# SIGBUS would kill this script, not the test run.
LOAD_UNTIL_FULL = """
import json, sys
from pathlib import Path
import numpy as np
from book_pipeline.core.runtime.disk_space import DiskFullError
from book_pipeline.core.books.parsing import BookRecord
from book_pipeline.core.store.opening import open_vector_store
folder, first, total = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(first)
written, error = 0, None
try:
    with open_vector_store("books", folder) as store:
        store.ensure_collection(384, "test-model")
        while written < total:
            books = [
                BookRecord(first + written + i, f"Title {first + written + i}", 1900 + i,
                           f"Author {i % 50}", "words about a book " * 10, "books.txt", 1)
                for i in range(256)
            ]
            store.upsert_books(books, rng.normal(size=(256, 384)).astype(np.float32), "0" * 64)
            written += 256
except DiskFullError as refused:
    error = str(refused)
print(json.dumps({"written": written, "error": error}))
"""


def load_until_full(folder: Path, first: int, total: int) -> tuple[int, str | None]:
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_UNTIL_FULL, str(folder), str(first), str(total)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout)
    return outcome["written"], outcome["error"]


@pytest.mark.xdist_group("loop_devices")
def test_a_collection_too_large_to_index_on_its_disk_is_refused_then_indexed_once_it_grows(
    tmp_path: Path,
) -> None:
    """80 MB hold about 7,700 384-d books: past the indexing threshold, with no room left to
    build the index."""
    with mounted_ext4(tmp_path / "store.img", tmp_path / "small", "80M") as filesystem:
        store_folder = filesystem.mount_point / "qdrant-edge"

        written, error = load_until_full(store_folder, first=0, total=20_000)

        assert error is not None
        assert f"embedded Qdrant store in {store_folder / 'books'}: " in error
        assert "index" in error  # the index build is what the space lacks
        assert written * 4 * 384 >= EDGE_INDEXING_THRESHOLD_BYTES
        with open_vector_store("books", store_folder) as store:
            assert store.count() == written
        assert indexed_segments(store_folder / "books") == 0

        filesystem.grow("200M")
        more, error = load_until_full(store_folder, first=written, total=256)

        assert (more, error) == (256, None)
        with open_vector_store("books", store_folder) as store:
            assert store.count() == written + 256
        assert indexed_segments(store_folder / "books") >= 1


def indexed_segments(shard: Path) -> int:
    """Segments whose dense vectors have an HNSW index, by Edge's own segment.json."""
    configs = [json.loads(path.read_text()) for path in shard.glob("segments/*/segment.json")]
    return sum(config["config"]["vector_data"][""]["index"]["type"] == "hnsw" for config in configs)
