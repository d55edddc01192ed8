"""`book-pipeline status`: every file the pipeline knows, with its state, from the ledger, and
the books the store actually holds of it."""

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

from book_pipeline.core.embedding.costs import cost_usd, describe_cost, describe_price
from book_pipeline.core.ingest.folder_review import FolderReview
from book_pipeline.core.ingest.ledger import FileState, LedgerEntry
from book_pipeline.core.ingest.removal_guard import HELD_STATE

PENDING = "pending"


@dataclass(frozen=True)
class FileStatus:
    file_name: str
    state: str
    # As recorded by the load; `stored` is what the store holds (None: it could not be read).
    books: int
    stored: int | None
    error: str | None
    error_line: int | None
    # Set when the store does not hold what the record says; the next run loads it again.
    drift: str | None = None
    # What embedding the file cost at its load: the tokens billed (None: not billed by the
    # token, or not recorded) and their price (None: no tokens, or no price known).
    tokens: int | None = None
    cost_usd: float | None = None

    @property
    def detail(self) -> str:
        return self.error or self.drift or ""


def folder_status(
    review: FolderReview,
    entries: dict[str, LedgerEntry],
    stored_counts: dict[str, int] | None,
    price_per_mtok: float | None = None,
    held: Collection[str] = (),
) -> list[FileStatus]:
    """Pending files from the folder's review; all others as the ledger last recorded them,
    with the store's count of their books when the store could be read, and the tokens their
    load was billed at `price_per_mtok` dollars per million. `held`: files whose removal the
    removal guard holds back (`removal_guard.hold_removals`)."""

    def stored(file_name: str) -> int | None:
        return None if stored_counts is None else stored_counts.get(file_name, 0)

    pending = {snapshot.name for snapshot in review.pending}
    gone = {entry.file_name for entry in review.removed}
    rows = _pending_rows(review, pending, stored)
    rows.extend(
        _recorded_row(entry, entry.file_name in gone, held, stored(entry.file_name), price_per_mtok)
        for entry in entries.values()
        if entry.file_name not in pending
    )
    rows.extend(
        FileStatus(
            name,
            HELD_STATE if name in held else "deleted, books not yet removed",
            0,
            stored(name),
            None,
            None,
            "the store holds books of this file, which no load recorded: the next run removes them",
        )
        for name in review.orphans
        if name not in entries
    )
    return sorted(rows, key=lambda row: row.file_name)


def _pending_rows(
    review: FolderReview, pending: set[str], stored: Callable[[str], int | None]
) -> list[FileStatus]:
    drifts = {drift.file_name: drift for drift in review.drifted}
    return [
        FileStatus(
            name,
            PENDING,
            drifts[name].recorded if name in drifts else 0,
            stored(name),
            None,
            None,
            f"{drifts[name].describe()}: the next run loads it again" if name in drifts else None,
        )
        for name in pending
    ]


def _recorded_row(
    entry: LedgerEntry,
    gone: bool,
    held: Collection[str],
    stored: int | None,
    price_per_mtok: float | None,
) -> FileStatus:
    """A file as the ledger last recorded it, or as deleted when it has left the folder."""
    state = entry.state.value
    if gone:
        # Gone from the folder, but no run has caught up with it yet.
        loaded = entry.state is FileState.LOADED
        state = "deleted, books not yet removed" if loaded else "deleted"
        if entry.file_name in held:
            state = HELD_STATE
    return FileStatus(
        entry.file_name,
        state,
        entry.books,
        stored,
        entry.error,
        entry.error_line,
        tokens=entry.tokens,
        cost_usd=None if entry.tokens is None else cost_usd(entry.tokens, price_per_mtok),
    )


def format_status_table(rows: list[FileStatus]) -> str:
    """One line per file; with token and cost columns when any load was billed by the token."""
    name_width = max((len(row.file_name) for row in rows), default=4)
    state_width = max((len(row.state) for row in rows), default=5)
    billed = any(row.tokens is not None for row in rows)
    costs = "   tokens      cost_usd" if billed else ""
    lines = [f"{'file':<{name_width}}  {'state':<{state_width}}  books  stored{costs}  detail"]
    lines.extend(
        f"{row.file_name:<{name_width}}  {row.state:<{state_width}}  {row.books:>5}  "
        f"{'-' if row.stored is None else row.stored:>6}"
        f"{_cost_columns(row) if billed else ''}  {row.detail}".rstrip()
        for row in rows
    )
    counts = Counter(row.state for row in rows)
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    return "\n".join([*lines, "", summary or "no files"])


def _cost_columns(row: FileStatus) -> str:
    if row.tokens is None:
        return f"  {'-':>7}  {'-':>12}"
    cost = "unknown" if row.cost_usd is None else f"{row.cost_usd:.6f}"
    return f"  {row.tokens:>7}  {cost:>12}"


def format_cost_total(rows: list[FileStatus], price_per_mtok: float | None, model: str) -> str:
    """The tokens the files' loads were billed, in all, and their cost; "" when none was."""
    billed = [row for row in rows if row.tokens is not None]
    if not billed:
        return ""
    tokens = sum(row.tokens or 0 for row in billed)
    return (
        f"embedding: {tokens} token(s) billed for the {len(billed)} file(s) as last loaded, "
        f"{describe_cost(cost_usd(tokens, price_per_mtok))} "
        f"({describe_price(model, price_per_mtok)})"
    )
