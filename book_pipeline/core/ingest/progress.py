"""A backfill in progress, as `book-pipeline status` shows it: files and books loaded of those
pending, the rate, and the time left; from the load ledger and the folder alone (no Dagster).

A backfill is the loads recorded one after another, each within `BACKFILL_GAP_SECONDS` of the
previous one, while files are still pending. The rate is measured between its first load and
its latest (a load records a whole run's files at once, so the time before the first load is
not known from the ledger); the books still pending are estimated from their files' sizes, at
the bytes per book of the files already loaded.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from book_pipeline.core.books.files import FileSnapshot
from book_pipeline.core.ingest.ledger import FileState, LedgerEntry

# Longer than one run of the sensor's largest batch takes on a slow machine: a longer pause
# ends the backfill, and the next load starts a new one.
BACKFILL_GAP_SECONDS = 30 * 60
_SECONDS_PER_MINUTE = 60


@dataclass(frozen=True)
class BackfillProgress:
    files_loaded: int
    files_pending: int
    books_loaded: int
    # Estimated from the pending files' sizes; None before any file of the backfill is loaded.
    books_pending: int | None
    # Books per second between the backfill's first and latest load; None before a second load.
    books_per_second: float | None

    @property
    def seconds_left(self) -> float | None:
        if self.books_pending is None or not self.books_per_second:
            return None
        return self.books_pending / self.books_per_second

    def describe(self) -> str:
        files = self.files_loaded + self.files_pending
        line = f"backfill: {self.files_loaded} of {files} file(s) loaded"
        if self.books_pending is None:
            return f"{line}; the first load has not finished yet"
        books = self.books_loaded + self.books_pending
        line += f", {self.books_loaded} of about {books} book(s)"
        if self.books_per_second is None:
            return f"{line}; the rate is known after the next load"
        return (
            f"{line}, {self.books_per_second:.1f} books/s, "
            f"about {describe_duration(self.seconds_left or 0.0)} left"
        )


def describe_duration(seconds: float) -> str:
    minutes = round(seconds / _SECONDS_PER_MINUTE)
    if minutes < 1:
        return f"{round(seconds)} s"
    hours, minutes = divmod(minutes, _SECONDS_PER_MINUTE)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def latest_backfill(entries: Iterable[LedgerEntry], now: float) -> list[LedgerEntry]:
    """The loads of the backfill going on at `now`, oldest first; [] when none is."""
    loads = sorted(
        (entry for entry in entries if entry.state is FileState.LOADED),
        key=lambda entry: entry.updated_at,
    )
    backfill: list[LedgerEntry] = []
    later = now
    for entry in reversed(loads):
        if later - entry.updated_at > BACKFILL_GAP_SECONDS:
            break
        backfill.append(entry)
        later = entry.updated_at
    return backfill[::-1]


def backfill_progress(
    entries: Iterable[LedgerEntry], pending: Sequence[FileSnapshot], now: float
) -> BackfillProgress | None:
    """The backfill in progress at `now`, or None when no file is pending."""
    if not pending:
        return None
    loaded = latest_backfill(entries, now)
    books_loaded = sum(entry.books for entry in loaded)
    bytes_loaded = sum(entry.size for entry in loaded)
    books_pending = None
    if books_loaded and bytes_loaded:
        books_pending = round(sum(s.size for s in pending) * books_loaded / bytes_loaded)
    rate = None
    if loaded:
        first_load = [e for e in loaded if e.updated_at == loaded[0].updated_at]
        seconds = loaded[-1].updated_at - loaded[0].updated_at
        if seconds > 0:
            rate = (books_loaded - sum(entry.books for entry in first_load)) / seconds
    return BackfillProgress(len(loaded), len(pending), books_loaded, books_pending, rate)
