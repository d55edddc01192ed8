"""Connecting to a Qdrant server (`QDRANT_URL`), checked before anything is written, and opening
the previous version's embedded store (qdrant-client's local mode) to copy it.
"""

from __future__ import annotations

from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.errors import (
    StoreLockedError,
    StoreRefusedError,
    StoreUnreachableError,
)
from book_pipeline.core.store.server import LOCAL_MODE_ENGINE, QdrantClientStore
from book_pipeline.core.store.server_version import ServerTooOldError, check_server_version

_SERVER_TIMEOUT_SECONDS = 30


def open_server_store(
    collection: str, url: str, api_key: str | None, settings: CollectionSettings | None
) -> QdrantClientStore:
    """Connect and ask two cheap questions, so an unreachable server fails here, by its URL,
    and so does one too old to keep the collection's stamp (`server_version`)."""
    # No background version check: it races the first request from a thread of its own, so a
    # refused key is sent twice and reported as "Failed to obtain server version".
    client = QdrantClient(
        url=url, api_key=api_key, timeout=_SERVER_TIMEOUT_SECONDS, check_compatibility=False
    )
    try:
        client.get_collections()
        check_server_version(client.info().version, url)
    except ServerTooOldError:
        client.close()
        raise
    except ResponseHandlingException as error:
        client.close()
        raise StoreUnreachableError(
            f"the Qdrant server at {url} is unreachable ({error}); check QDRANT_URL and that "
            "the server is running"
        ) from None
    except UnexpectedResponse as error:
        client.close()
        raise StoreRefusedError(f"the Qdrant server at {url} refused: {error}") from None
    return QdrantClientStore(client, collection, url, settings)


def open_local_mode_store(path: Path, collection: str) -> QdrantClientStore:
    """The previous version's embedded store, opened to be copied (it is never written to)."""
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as error:
        if "already accessed by another instance" not in str(error):
            raise
        raise StoreLockedError(
            f"the previous version's Qdrant store {path} is in use by another process (a "
            "pipeline of the previous version still running?); stop it and try again"
        ) from None
    return QdrantClientStore(client, collection, str(path), engine=LOCAL_MODE_ENGINE)
