import os
from pathlib import Path

from book_pipeline.core.book_files import FileSnapshot, file_sha256, snapshot_book_files
from book_pipeline.core.ledger import FileState, LoadLedger, review_folder
from book_pipeline.core.parsing import parse_book_file


def write(path: Path, text: str) -> FileSnapshot:
    path.write_text(text)
    return FileSnapshot.of(path)


def book_line(title: str) -> str:
    return f"1 ::: {title} (2001) ::: Someone ::: Something happens.\n"


def record_loaded(ledger: LoadLedger, *snapshots: FileSnapshot) -> None:
    ledger.record_loaded(parse_book_file(snapshot.path) for snapshot in snapshots)


def review(folder: Path, ledger: LoadLedger, hashed: list[str] | None = None):
    def sha256_of(snapshot: FileSnapshot) -> str:
        if hashed is not None:
            hashed.append(snapshot.name)
        return file_sha256(snapshot.path)

    return review_folder(snapshot_book_files(folder), ledger.entries(), sha256_of)


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

    ledger.record_removed(entry, books_kept=False)
    assert review(tmp_path, ledger).removed == []
    assert ledger.entries()["gone.txt"].state is FileState.REMOVED
    assert ledger.entries()["gone.txt"].books == 0


def test_a_file_that_comes_back_is_pending_again(tmp_path: Path) -> None:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    back = write(tmp_path / "back.txt", book_line("Back"))
    record_loaded(ledger, back)
    [entry] = review_folder([], ledger.entries(), lambda snapshot: "").removed
    ledger.record_removed(entry, books_kept=True)

    assert [snapshot.name for snapshot in review(tmp_path, ledger).pending] == ["back.txt"]


def test_missing_ledger_reads_as_empty(tmp_path: Path) -> None:
    assert LoadLedger(tmp_path / "nowhere" / "ledger.sqlite").entries() == {}
