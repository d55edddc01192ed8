"""The red steps of fetch_data: a refused file, or one the token budget held back, fails a step
of its own under the file's mapping key, so the run fails (and alerts fire) while the other files
load.

Gathered and mapped again, rather than mapped straight from the transform or the embed, so that a
run of good files has no extra (skipped) step per file in the UI.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from book_pipeline.core.books.files import FileSnapshot, mapping_key_for, snapshot_book_file
from book_pipeline.defs.resources import BooksFolder


@dataclass(frozen=True)
class OverBudgetBookFile:
    """A file the run's token budget held back: none of its texts was sent."""

    snapshot: FileSnapshot
    error: str
    limit: int
    spent: int
    needed: int


@dataclass(frozen=True)
class RefusedBookFile:
    """A file the transform refused: the file as it was read, and why (names file and line)."""

    snapshot: FileSnapshot
    error: str
    line_number: int | None
    problem: str


@dg.op(out=dg.DynamicOut(RefusedBookFile))
def list_refused_book_files(refusals: list[RefusedBookFile | None]):
    """One dynamic output per refused file, under the file's own mapping key.

    Gathered and mapped again, rather than mapped straight from the transform, so that a run of
    good files has no extra (skipped) step per file in the UI.
    """
    for refusal in refusals:
        if refusal is not None:
            yield dg.DynamicOutput(refusal, mapping_key=mapping_key_for(refusal.snapshot.name))


@dg.op(out=dg.Out(dg.Nothing))
def refuse_book_description_file(books_folder: BooksFolder, refusal: RefusedBookFile) -> None:
    """Fail this file's own step, with the error naming the file, the line and the problem.

    Run again by a re-execution from failure, it reads nothing but the file's stat: it fails
    the same way, and says so when the file has changed since, because only a new run (the
    sensor, Materialize) reads and loads the new version.
    """
    description = refusal.error
    if _changed_since(refusal.snapshot, books_folder.folder):
        description += (
            f" ({refusal.snapshot.name} has changed since it was refused: a re-execution reuses "
            "this run's parsed files, so start a new run, or let the sensor, to load it)"
        )
    raise dg.Failure(
        description=description,
        metadata={
            "file": dg.MetadataValue.path(str(refusal.snapshot.path)),
            "line": refusal.line_number or 0,
            "problem": refusal.problem,
        },
        # A malformed file stays malformed: retrying cannot help, fixing the file does.
        allow_retries=False,
    )


def _changed_since(snapshot: FileSnapshot, books_folder: Path) -> bool:
    try:
        current = snapshot_book_file(snapshot.path, books_folder)
    except OSError:  # deleted or renamed since
        return True
    return (current.size, current.mtime_ns) != (snapshot.size, snapshot.mtime_ns)


@dg.op(out=dg.DynamicOut(OverBudgetBookFile))
def list_over_budget_book_files(held_back: list[OverBudgetBookFile | None]):
    """One dynamic output per file the token budget held back, under its own mapping key."""
    for file in held_back:
        if file is not None:
            yield dg.DynamicOutput(file, mapping_key=mapping_key_for(file.snapshot.name))


@dg.op(out=dg.Out(dg.Nothing))
def refuse_over_budget_book_file(held_back: OverBudgetBookFile) -> None:
    """Fail this file's own step, naming the budget, what the run had spent and what the file
    needs, so the run fails (and its alerts fire) while the other files load. Not retried: the
    budget is the run's; the next run has its own."""
    raise dg.Failure(
        description=held_back.error,
        metadata={
            "file": dg.MetadataValue.path(str(held_back.snapshot.path)),
            "max_embedding_tokens_per_run": held_back.limit,
            "tokens_spent_by_the_run": held_back.spent,
            "tokens_needed": held_back.needed,
        },
        allow_retries=False,
    )
