"""Versions of the collection: one per embedding model, one of them current.

Changing the embedding model builds a new version beside the current one; search reads the
current version until the new one is complete and passed its check, then one atomic step makes
it current (`VersionCatalog.switch`). The configured collection name (`books`) is version 1, so
a collection of an earlier release is version 1 as it is, with nothing reloaded; version N is
the collection `books__vN`. Which one is current is, on a server, the collection alias
`books__current` (re-pointed by one `update_collection_aliases` request, which Qdrant applies
atomically: other clients can query the alias); in the embedded store, the pointer file
`books.current.json` in the store folder, replaced by a rename. No pointer, no alias: version 1.

Each version records the embedder it was built with (provider, model, dimensions), so a search
embeds its query with the version's own model whatever is configured, and whether it was rolled
back (the pipeline then leaves it alone until it is switched to by hand).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from typing import Any

from book_pipeline.core.runtime.fail_points import IN_THE_MIDDLE_OF_THE_SWITCH, fail_point
from book_pipeline.core.store.base import BookVectorStore

VERSION_MARK = "__v"
CURRENT_MARK = "__current"
POINTER_SUFFIX = ".current.json"
_RECORD_KEY = "version_record"


class VersionError(RuntimeError):
    """A version that does not exist, or may not be switched to or removed."""


@dataclass(frozen=True)
class EmbedderRecord:
    """What a version's vectors were made with; enough to embed a query the same way (the API
    key and endpoint come from the configuration, never from the store)."""

    provider: str
    model: str | None
    dimensions: int | None = None


@dataclass(frozen=True)
class VersionRecord:
    embedder: EmbedderRecord | None = None
    rolled_back: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "embedder": None if self.embedder is None else asdict(self.embedder),
            "rolled_back": self.rolled_back,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> VersionRecord:
        if not data:
            return cls()
        embedder = data.get("embedder")
        return cls(EmbedderRecord(**embedder) if embedder else None, bool(data.get("rolled_back")))


@dataclass(frozen=True)
class CollectionVersion:
    number: int
    name: str
    # None: the collection was made without a model record (dimension only).
    model: str | None
    dimension: int
    points: int
    current: bool
    record: VersionRecord


def version_name(base: str, number: int) -> str:
    return base if number == 1 else f"{base}{VERSION_MARK}{number}"


def version_number(base: str, name: str) -> int | None:
    """The version a collection name is of `base`; None: not one of its versions."""
    if name == base:
        return 1
    match = re.fullmatch(re.escape(base + VERSION_MARK) + r"([2-9]|[1-9]\d+)", name)
    return int(match[1]) if match else None


def alias_name(base: str) -> str:
    return base + CURRENT_MARK


class VersionCatalog(ABC):
    """The versions of one collection in one open store, and the pointer to the current one.

    `open` gives a version's store on the catalog's own connection (the embedded store's lock,
    the server's client): closing it releases nothing the catalog holds.
    """

    base: str

    @abstractmethod
    def names(self) -> list[str]:
        """The versions that exist, by number."""

    @abstractmethod
    def current_name(self) -> str:
        """The current version's collection (the base name when nothing points elsewhere)."""

    @abstractmethod
    def has_pointer(self) -> bool:
        """Whether a pointer (alias) names the current version; without one, version 1 is."""

    @abstractmethod
    def _point_current(self, name: str) -> None:
        """Make `name` current in one atomic step."""

    @abstractmethod
    def open(self, name: str) -> BookVectorStore:
        """The version's store, open until the catalog closes (closing it is harmless)."""

    @abstractmethod
    def close(self) -> None:
        """Close the stores `open` opened (not the one the catalog was made with)."""

    @abstractmethod
    def _drop(self, name: str) -> None: ...

    @abstractmethod
    def model_of(self, name: str) -> str | None:
        """The model the version was created for, read without opening it."""

    @abstractmethod
    def read_record(self, name: str) -> VersionRecord: ...

    @abstractmethod
    def write_record(self, name: str, record: VersionRecord) -> None: ...

    def number_of(self, name: str) -> int:
        number = version_number(self.base, name)
        assert number is not None, f"{name!r} is not a version of {self.base!r}"
        return number

    def next_name(self) -> str:
        numbers = [self.number_of(name) for name in self.names()] or [1]
        return version_name(self.base, max(numbers) + 1)

    def versions(self) -> list[CollectionVersion]:
        current = self.current_name()
        found = []
        for name in self.names():
            store = self.open(name)
            try:
                dimension, model = store.collection_model()
                points = store.count()
            finally:
                store.close()
            found.append(
                CollectionVersion(
                    self.number_of(name),
                    name,
                    model,
                    dimension,
                    points,
                    name == current,
                    self.read_record(name),
                )
            )
        return found

    def version_for_model(self, model_name: str) -> str | None:
        """The newest version built with this model, or None."""
        for name in reversed(self.names()):
            if self.model_of(name) == model_name:
                return name
        return None

    def resolve(self, version: str | int) -> str:
        """A version by number (2) or collection name (books__v2); refused when it is not one."""
        name = version_name(self.base, int(version)) if str(version).isdigit() else str(version)
        if name not in self.names():
            known = ", ".join(f"{self.number_of(each)} ({each})" for each in self.names())
            raise VersionError(
                f"collection {self.base!r} has no version {version}: it has {known or 'none'}"
            )
        return name

    def switch(self, name: str, rolled_back: str | None = None) -> None:
        """Make `name` current at once (no embedding); `rolled_back`, the version it replaces
        when that one is rejected, is marked so the pipeline does not switch back to it."""
        if name not in self.names():
            raise VersionError(f"{name!r} is not a version of collection {self.base!r}")
        self.write_record(name, VersionRecord(self.read_record(name).embedder, False))
        if rolled_back is not None and rolled_back != name:
            rejected = self.read_record(rolled_back).embedder
            self.write_record(rolled_back, VersionRecord(rejected, rolled_back=True))
        fail_point(IN_THE_MIDDLE_OF_THE_SWITCH)
        self._point_current(name)

    def ensure_pointer(self) -> None:
        """Point at the current version when nothing does yet (a collection of an earlier
        release), so other clients can query the alias from now on."""
        current = self.current_name()
        if not self.has_pointer() and current in self.names():
            self._point_current(current)

    def remove_unused(
        self, keep: Collection[str] = (), on_removed: Callable[[str], None] | None = None
    ) -> list[str]:
        """Delete every version but the current one and those in `keep` (a rebuild under way);
        returns their names."""
        current = self.current_name()
        removed = []
        for name in self.names():
            if name != current and name not in keep:
                self._drop(name)
                removed.append(name)
                if on_removed is not None:
                    on_removed(name)
        return removed


class BorrowedStore:
    """A view of a store the catalog keeps open: closing the view closes nothing (the same
    shard cannot be opened twice in one process, and the server's client is shared)."""

    def __init__(self, store: BookVectorStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        pass


def record_from_metadata(metadata: dict[str, Any]) -> VersionRecord:
    return VersionRecord.from_dict(metadata.get(_RECORD_KEY))


def metadata_with_record(metadata: dict[str, Any], record: VersionRecord) -> dict[str, Any]:
    return {**metadata, _RECORD_KEY: record.as_dict()}
