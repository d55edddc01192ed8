"""The versions of a collection on a Qdrant server: collections side by side, and the alias
`<collection>__current` naming the current one, re-pointed by one atomic request."""

from __future__ import annotations

from qdrant_client import models

from book_pipeline.core.store.server import QdrantClientStore
from book_pipeline.core.store.versions import (
    VersionCatalog,
    VersionRecord,
    alias_name,
    metadata_with_record,
    record_from_metadata,
    version_number,
)


class _SharedClientStore(QdrantClientStore):
    """A version's store on the catalog's client, which stays open when this one closes."""

    def close(self) -> None:
        pass


class ServerVersionCatalog(VersionCatalog):
    def __init__(self, store: QdrantClientStore, base: str) -> None:
        self._store = store
        self._client = store.client
        self.base = base

    @property
    def alias(self) -> str:
        return alias_name(self.base)

    def names(self) -> list[str]:
        found = [
            collection.name
            for collection in self._client.get_collections().collections
            if version_number(self.base, collection.name) is not None
        ]
        return sorted(found, key=self.number_of)

    def current_name(self) -> str:
        for alias in self._client.get_aliases().aliases:
            if alias.alias_name == self.alias:
                return alias.collection_name
        return self.base

    def has_pointer(self) -> bool:
        return any(alias.alias_name == self.alias for alias in self._client.get_aliases().aliases)

    def _point_current(self, name: str) -> None:
        operations: list[models.AliasOperations] = []
        if self.has_pointer():
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=name, alias_name=self.alias)
            )
        )
        # One request: the server applies its operations atomically, so a query by the alias
        # never finds it missing.
        self._client.update_collection_aliases(change_aliases_operations=operations)

    def open(self, name: str) -> QdrantClientStore:
        store = _SharedClientStore(
            self._store.client._client,
            name,
            self._store.location,
            self._store.settings,
            self._store.engine,
        )
        return store

    def close(self) -> None:
        pass  # its stores share the catalog's client, which its opener closes

    def _drop(self, name: str) -> None:
        self._client.delete_collection(name)

    def model_of(self, name: str) -> str | None:
        return self._metadata(name).get("embedding_model")

    def read_record(self, name: str) -> VersionRecord:
        return record_from_metadata(self._metadata(name))

    def write_record(self, name: str, record: VersionRecord) -> None:
        metadata = metadata_with_record(self._metadata(name), record)
        self._client.update_collection(name, metadata=metadata)

    def _metadata(self, name: str) -> dict:
        return dict(self._client.get_collection(name).config.metadata or {})
