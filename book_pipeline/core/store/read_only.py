"""Reads only read: `search`, `status`, `info`, `estimate` and the `query_data` job open the
store read-only (`opening.open_vector_store(read_only=True)`).

A store that needs an upgrade (an Edge shard of the release before keyword vectors, the previous
version's local-mode store not yet copied into Edge) answers what it can as it is, dense
searches, and is upgraded by the next load, the one writer: a read never rewrites a shard
behind a user's back, nor pays for the copy of a whole collection on a search.
"""

from __future__ import annotations

from collections.abc import Callable

from book_pipeline.core.store.base import BookVectorStore

NEXT_LOAD_UPGRADES = "the next load adds them (computed from the stored books, nothing embedded)"


def tell_upgrade_waits(store: BookVectorStore, on_wait: Callable[[str], None] | None) -> None:
    """Say that a dense-only collection answers dense searches until the next load."""
    if on_wait is not None:
        on_wait(
            f"the Qdrant collection {store.collection!r} at {store.location} holds no keyword "
            f"vectors yet (made by an earlier release): it answers dense searches only; "
            f"{NEXT_LOAD_UPGRADES}"
        )


def tell_copy_waits(legacy_location: str, on_wait: Callable[[str], None] | None) -> None:
    if on_wait is not None:
        on_wait(
            f"read from the previous version's Qdrant store {legacy_location} as it is (dense "
            "searches only): the next load copies it into the Qdrant Edge store"
        )
