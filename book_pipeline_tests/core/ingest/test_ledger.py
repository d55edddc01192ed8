import os
import sqlite3
from pathlib import Path

from book_pipeline.core.books.files import FileSnapshot, file_sha256, snapshot_book_files
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.ingest.folder_review import review_books_folder, review_folder
from book_pipeline.core.ingest.ledger import PREVIOUS_RELEASE, SCHEMA_VERSION, FileState, LoadLedger
from book_pipeline.core.store.base import CollectionStamp

# The collection the tests load into, after its first load.
STAMP = CollectionStamp("generation-a", 1)


def write(path: Path, text: str) -> FileSnapshot:
    path.write_text(text)
    return FileSnapshot.of(path)


def book_line(title: str) -> str:
    return f"1 ::: {title} (2001) ::: Someone ::: Something happens.\n"


def record_loaded(
    ledger: LoadLedger, *snapshots: FileSnapshot, stamp: CollectionStamp = STAMP
) -> None:
    assert stamp.generation is not None
    ledger.record_loaded(
        (parse_book_file(snapshot.path) for snapshot in snapshots),
        stamp.generation,
        stamp.load_sequence,
    )


def review(
    folder: Path,
    ledger: LoadLedger,
    hashed: list[str] | None = None,
    stamp: CollectionStamp | None = STAMP,
):
    def sha256_of(snapshot: FileSnapshot) -> str:
        if hashed is not None:
            hashed.append(snapshot.name)
        return file_sha256(snapshot.path)

    return review_folder(snapshot_book_files(folder), ledger.entries(stamp), sha256_of)


def test_new_files_are_pending_and_loaded_ones_are_not(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    a = write(tmp_path / "a.txt", book_line("One"))
    write(tmp_path / "b.txt", book_line("Two"))
    record_loaded(ledger, a)

    result = review(tmp_path, ledger)

    assert [snapshot.name for snapshot in result.pending] == ["b.txt"]
    assert result.up_to_date == 1


def test_changed_content_is_pending_but_a_touch_is_not(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    a = write(tmp_path / "a.txt", book_line("One"))
    b = write(tmp_path / "b.txt", book_line("Two"))
    record_loaded(ledger, a, b)
    write(tmp_path / "a.txt", book_line("One more"))
    os.utime(b.path, ns=(b.mtime_ns + 10**9, b.mtime_ns + 10**9))

    hashed: list[str] = []
    result = review(tmp_path, ledger, hashed)

    assert [snapshot.name for snapshot in result.pending] == ["a.txt"]
    assert result.up_to_date == 1
    # Another size is a change for certain; only the same size with a new mtime is read.
    assert hashed == ["b.txt"]


def test_failed_file_is_skipped_until_its_content_changes(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    bad = write(tmp_path / "bad.txt", "broken")
    ledger.record_failed(bad, file_sha256(bad.path), "bad.txt, line 1: broken", 1)

    first = review(tmp_path, ledger)
    assert first.pending == []
    assert [entry.file_name for entry in first.failed_unchanged] == ["bad.txt"]
    assert first.failed_unchanged[0].error_line == 1

    write(tmp_path / "bad.txt", "fixed now")
    assert [snapshot.name for snapshot in review(tmp_path, ledger).pending] == ["bad.txt"]


def test_deleted_files_are_reported_once(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    gone = write(tmp_path / "gone.txt", book_line("A") + book_line("B").replace("1", "2", 1))
    record_loaded(ledger, gone)
    gone.path.unlink()

    [entry] = review(tmp_path, ledger).removed
    assert (entry.file_name, entry.books) == ("gone.txt", 2)

    ledger.record_removed([entry], "generation-a", 2, books_kept=False)
    later = CollectionStamp("generation-a", 2)
    assert review(tmp_path, ledger, stamp=later).removed == []
    assert ledger.entries(later)["gone.txt"].state is FileState.REMOVED
    assert ledger.entries(later)["gone.txt"].books == 0


def test_a_file_that_comes_back_is_pending_again(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    back = write(tmp_path / "back.txt", book_line("Back"))
    record_loaded(ledger, back)
    [entry] = review_folder([], ledger.entries(STAMP), lambda snapshot: "").removed
    ledger.record_removed([entry], "generation-a", 1, books_kept=True)

    assert [snapshot.name for snapshot in review(tmp_path, ledger).pending] == ["back.txt"]


def test_missing_ledger_reads_as_empty(tmp_path: Path) -> None:
    assert LoadLedger(tmp_path / "nowhere" / "ledger.sqlite").entries(STAMP) == {}


def test_loads_count_only_for_the_collection_they_went_into(tmp_path: Path) -> None:
    """A store deleted, moved or replaced, another collection name or model: another (or no)
    generation, so every file is pending there; switching back loads nothing."""
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    a = write(tmp_path / "a.txt", book_line("One"))
    record_loaded(ledger, a)

    assert [s.name for s in review(tmp_path, ledger, stamp=None).pending] == ["a.txt"]
    other = CollectionStamp("generation-b", 0)
    assert [s.name for s in review(tmp_path, ledger, stamp=other).pending] == ["a.txt"]
    record_loaded(ledger, a, stamp=CollectionStamp("generation-b", 1))
    assert review(tmp_path, ledger, stamp=CollectionStamp("generation-b", 1)).up_to_date == 1
    assert review(tmp_path, ledger, stamp=STAMP).up_to_date == 1


def test_an_older_copy_of_the_collection_makes_only_later_loads_pending(tmp_path: Path) -> None:
    """A backup restored from after load 1: the files of load 2 are pending, a removal of
    load 2 is to be done again, the files of load 1 stay loaded."""
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    early = write(tmp_path / "early.txt", book_line("Early"))
    late = write(tmp_path / "late.txt", book_line("Late"))
    gone = write(tmp_path / "gone.txt", book_line("Gone"))
    record_loaded(ledger, early, gone)
    record_loaded(ledger, late, stamp=CollectionStamp("generation-a", 2))
    gone.path.unlink()
    [entry] = review(tmp_path, ledger, stamp=CollectionStamp("generation-a", 2)).removed
    ledger.record_removed([entry], "generation-a", 2, books_kept=False)

    # What a sensor tick sees (the stamp alone), then a run's listing (the store's counts too).
    ticked = review_books_folder(tmp_path, ledger, STAMP)
    restored = review_books_folder(tmp_path, ledger, STAMP, {"early.txt": 1, "gone.txt": 1})

    for review_of_the_copy in (ticked, restored):
        assert [s.name for s in review_of_the_copy.pending] == ["late.txt"]
        assert review_of_the_copy.up_to_date == 1
        assert [e.file_name for e in review_of_the_copy.removed] == ["gone.txt"]
    [drift] = restored.drifted
    assert drift.file_name == "late.txt"
    assert "by load 2, after the store's last load (1), the store holds 0" in drift.describe()


def test_the_store_counts_make_a_drifted_file_pending_and_find_orphans(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    whole = write(tmp_path / "whole.txt", book_line("Whole"))
    lost = write(tmp_path / "lost.txt", book_line("Lost"))
    record_loaded(ledger, whole, lost)

    result = review_books_folder(
        tmp_path, ledger, STAMP, stored_counts={"whole.txt": 1, "stray.txt": 3}
    )

    assert [s.name for s in result.pending] == ["lost.txt"]
    assert [(d.file_name, d.recorded, d.stored) for d in result.drifted] == [("lost.txt", 1, 0)]
    assert result.orphans == ["stray.txt"]
    assert result.up_to_date == 1


def test_a_refusal_holds_in_every_collection_until_the_file_loads(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    bad = write(tmp_path / "bad.txt", "broken")
    ledger.record_failed(bad, file_sha256(bad.path), "bad.txt, line 1: broken", 1)

    for stamp in (STAMP, CollectionStamp("generation-b", 3), None):
        assert [e.file_name for e in review(tmp_path, ledger, stamp=stamp).failed_unchanged] == [
            "bad.txt"
        ]
    fixed = write(tmp_path / "bad.txt", book_line("Fixed"))
    record_loaded(ledger, fixed)
    assert review(tmp_path, ledger).up_to_date == 1
    assert review(tmp_path, ledger, stamp=None).failed_unchanged == []


def test_the_previous_release_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    """Its loads describe the collection made before generations, which adopts them; its
    refusals stay refusals."""
    path = tmp_path / "ledger.sqlite"
    loaded = write(tmp_path / "loaded.txt", book_line("Loaded"))
    bad = write(tmp_path / "bad.txt", "broken")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE book_files (file_name TEXT PRIMARY KEY, state TEXT NOT NULL, "
            "sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
            "books INTEGER NOT NULL, error TEXT, error_line INTEGER, updated_at REAL NOT NULL)"
        )
        connection.executemany(
            "INSERT INTO book_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("loaded.txt", "loaded", file_sha256(loaded.path), loaded.size,
                 loaded.mtime_ns, 1, None, None, 1.0),
                ("bad.txt", "failed", file_sha256(bad.path), bad.size, bad.mtime_ns, 0,
                 "bad.txt, line 1: broken", 1, 2.0),
            ],
        )  # fmt: skip
    ledger = LoadLedger(path)
    made_before_generations = CollectionStamp(None, 0)

    result = review(tmp_path, ledger, stamp=made_before_generations)

    assert (result.up_to_date, result.pending) == (1, [])
    assert [e.file_name for e in result.failed_unchanged] == ["bad.txt"]
    assert ledger.entries(made_before_generations)["loaded.txt"].collection == PREVIOUS_RELEASE
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    ledger.adopt_previous_release("generation-new")
    assert review(tmp_path, ledger, stamp=CollectionStamp("generation-new", 1)).up_to_date == 1
    assert review(tmp_path, ledger, stamp=made_before_generations).pending != []


def test_a_version_2_ledger_gains_the_tokens_column_in_place(tmp_path: Path) -> None:
    """Its records stay as they were; their tokens are unknown, a new load records its own."""
    path = tmp_path / "ledger.sqlite"
    loaded = write(tmp_path / "loaded.txt", book_line("Loaded"))
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE book_files (collection TEXT NOT NULL, file_name TEXT NOT NULL, "
            "state TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, books INTEGER NOT NULL, error TEXT, error_line INTEGER, "
            "updated_at REAL NOT NULL, load_sequence INTEGER NOT NULL DEFAULT 0, "
            "PRIMARY KEY (collection, file_name))"
        )
        connection.execute(
            "INSERT INTO book_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("generation-a", "loaded.txt", "loaded", file_sha256(loaded.path), loaded.size,
             loaded.mtime_ns, 1, None, None, 1.0, 1),
        )  # fmt: skip
        connection.execute("PRAGMA user_version = 2")
    ledger = LoadLedger(path)

    assert review(tmp_path, ledger).up_to_date == 1
    assert ledger.entries(STAMP)["loaded.txt"].tokens is None
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    ledger.record_loaded([parse_book_file(loaded.path)], "generation-a", 2, {"loaded.txt": 9})
    assert ledger.entries(CollectionStamp("generation-a", 2))["loaded.txt"].tokens == 9
