"""A data folder as the tests read it: its embedded store and its ledger."""

import hashlib
import subprocess
import sys
from pathlib import Path

from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_NAME
from book_pipeline.core.ingest.ledger import LedgerEntry, LoadLedger
from book_pipeline.core.settings import DEFAULT_COLLECTION, EDGE_FOLDER_NAME, LEDGER_FILE_NAME
from book_pipeline.core.store.opening import read_collection_stamp
from book_pipeline.defs.resources import QdrantResource, embedded_store_paths


def qdrant_in(data_dir: Path) -> QdrantResource:
    """The embedded store a run with `fetch_data_run_config(..., data_dir)` writes to."""
    return QdrantResource(**embedded_store_paths(data_dir))


def ledger_in(data_dir: Path) -> LoadLedger:
    return LoadLedger(data_dir / LEDGER_FILE_NAME)


def recorded_entries(data_dir: Path) -> dict[str, LedgerEntry]:
    """What the ledger records for the data folder's embedded collection as it is now."""
    stamp = read_collection_stamp(DEFAULT_COLLECTION, data_dir / EDGE_FOLDER_NAME)
    return ledger_in(data_dir).entries(stamp)


def record_as_loaded(data_dir: Path, paths: list[Path]) -> None:
    """The ledger records the files as loaded into the data folder's embedded collection
    (created, real and empty, for the bundled model): what a sensor tick reads, without a run."""
    with qdrant_in(data_dir).open() as store:
        store.ensure_collection(384, LOCAL_MODEL_NAME)
        stamp = store.stamp()
        assert stamp is not None
        generation = store.record_load(stamp.load_sequence + 1)
        ledger_in(data_dir).record_loaded(
            (parse_book_file(path) for path in paths), generation, stamp.load_sequence + 1
        )


def point_count(data_dir: Path) -> int:
    with qdrant_in(data_dir).open() as store:
        return store.count()


HOLD_STORE = """
import sys, time
from pathlib import Path
from book_pipeline.core.store.opening import open_vector_store
with open_vector_store("books", Path(sys.argv[1])):
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_store_open(path: Path, seconds: float) -> subprocess.Popen:
    """Another process with the embedded store open, as a running load has it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


def folder_fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
