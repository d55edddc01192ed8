"""The versions of a collection in the embedded store: shard folders side by side, and the
pointer file naming the current one.

Every version lives under the one store lock the catalog's process holds, so a switch (one
rename of the pointer file) never happens while another process reads a version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import cast

from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import BookVectorStore
from book_pipeline.core.store.edge import EdgeStore
from book_pipeline.core.store.edge_folder import MANIFEST_NAME, write_manifest
from book_pipeline.core.store.versions import (
    POINTER_SUFFIX,
    BorrowedStore,
    VersionCatalog,
    VersionError,
    VersionRecord,
    version_number,
)

# Beside the shard's manifest: what the version was built with, and whether it was rolled back.
RECORD_NAME = "book_pipeline_version.json"
_POINTER_KEY = "collection"


class EdgeVersionCatalog(VersionCatalog):
    """The versions of `base` in the store `folder`, whose lock the caller holds."""

    def __init__(
        self,
        folder: Path,
        base: str,
        settings: CollectionSettings | None = None,
        primary: BookVectorStore | None = None,
    ) -> None:
        """`primary`: the shard opened with the store's lock. Without it, the catalog only reads
        names, records and the pointer (a sensor, while a load holds the lock)."""
        self.folder = folder
        self.base = base
        self.settings = settings
        self._open: dict[str, BookVectorStore] = {}
        self._primary = None if primary is None else primary.collection
        if primary is not None:
            self._open[primary.collection] = primary

    @property
    def pointer_path(self) -> Path:
        return self.folder / f"{self.base}{POINTER_SUFFIX}"

    def has_pointer(self) -> bool:
        return self.pointer_path.exists()

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        found = [
            path.name
            for path in self.folder.iterdir()
            if path.is_dir() and version_number(self.base, path.name) is not None
        ]
        return sorted(found, key=self.number_of)

    def current_name(self) -> str:
        return current_edge_version(self.folder, self.base)

    def _point_current(self, name: str) -> None:
        _write_json_atomically(self.pointer_path, {_POINTER_KEY: name})

    def open(self, name: str) -> BookVectorStore:
        assert self._primary is not None, "a catalog without the store's lock opens no version"
        if name not in self._open:
            # No lock handle: the catalog's process holds the store's lock already.
            self._open[name] = EdgeStore(self.folder, name, None, self.settings)
        return cast(BookVectorStore, BorrowedStore(self._open[name]))

    def close(self) -> None:
        for name, store in list(self._open.items()):
            if name != self._primary:
                store.close()
                del self._open[name]

    def _drop(self, name: str) -> None:
        if name == self._primary:
            # It holds the store's lock for the catalog: a new open starts from the current one.
            raise VersionError(f"{name!r} was current when the store was opened: open it again")
        opened = self._open.pop(name, None)
        if opened is not None:
            opened.close()
        # Renamed out of the way first: a crash while deleting leaves a leftover folder that
        # the next open removes, never half a version.
        doomed = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=self.folder))
        os.replace(self.folder / name, doomed / name)
        shutil.rmtree(doomed, ignore_errors=True)

    def model_of(self, name: str) -> str | None:
        try:
            manifest = json.loads((self.folder / name / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return manifest.get("embedding_model")

    def read_record(self, name: str) -> VersionRecord:
        try:
            data = json.loads((self.folder / name / RECORD_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return VersionRecord()
        return VersionRecord.from_dict(data)

    def write_record(self, name: str, record: VersionRecord) -> None:
        _write_json_atomically(self.folder / name / RECORD_NAME, record.as_dict())


def current_edge_version(folder: Path, base: str) -> str:
    """The current version's shard name, from the pointer file alone (no lock: the sensor reads
    it while a load holds the store; the pointer is replaced whole, never half written)."""
    try:
        data = json.loads((folder / f"{base}{POINTER_SUFFIX}").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return base
    return str(data[_POINTER_KEY])


def _write_json_atomically(path: Path, data: dict) -> None:
    # The manifest's own atomic write: a temporary file, fsynced, renamed over the old one.
    write_manifest(path.parent, data, file_name=path.name)
