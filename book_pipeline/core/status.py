"""`book-pipeline status`: every file the pipeline knows, with its state, from the ledger."""

from collections import Counter
from dataclasses import dataclass

from book_pipeline.core.ledger import FileState, FolderReview, LedgerEntry

PENDING = "pending"


@dataclass(frozen=True)
class FileStatus:
    file_name: str
    state: str
    books: int
    error: str | None
    error_line: int | None


def folder_status(review: FolderReview, entries: dict[str, LedgerEntry]) -> list[FileStatus]:
    """Pending files from the folder's review; all others as the ledger last recorded them."""
    pending = {snapshot.name for snapshot in review.pending}
    gone = {entry.file_name for entry in review.removed}

    def state_of(entry: LedgerEntry) -> str:
        if entry.file_name not in gone:
            return entry.state.value
        # Gone from the folder, but no run has caught up with it yet.
        return "deleted, books not yet removed" if entry.state is FileState.LOADED else "deleted"

    rows = [FileStatus(name, PENDING, 0, None, None) for name in pending]
    rows.extend(
        FileStatus(entry.file_name, state_of(entry), entry.books, entry.error, entry.error_line)
        for entry in entries.values()
        if entry.file_name not in pending
    )
    return sorted(rows, key=lambda row: row.file_name)


def format_status_table(rows: list[FileStatus]) -> str:
    name_width = max((len(row.file_name) for row in rows), default=4)
    state_width = max((len(row.state) for row in rows), default=5)
    lines = [f"{'file':<{name_width}}  {'state':<{state_width}}  books  detail"]
    lines.extend(
        f"{row.file_name:<{name_width}}  {row.state:<{state_width}}  {row.books:>5}  "
        f"{row.error or ''}".rstrip()
        for row in rows
    )
    counts = Counter(row.state for row in rows)
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    return "\n".join([*lines, "", summary or "no files"])
